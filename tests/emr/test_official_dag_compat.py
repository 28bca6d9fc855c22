"""A DAG written for the official amazon provider's EMR operators and sensors runs with only its
imports changed.

One DAG source, two import blocks: with the official imports it must build (so every argument
it uses is an official one); with ours it runs to success under ``dag.test()`` against moto,
in a fresh interpreter with its own Airflow home and database, and leaves the cluster
terminated, the step completed and the Serverless run succeeded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.emr.moto_aws import APP, ROLE, MotoAws

OFFICIAL_IMPORTS = """\
from airflow.providers.amazon.aws.operators.emr import (
    EmrAddStepsOperator,
    EmrCreateJobFlowOperator,
    EmrServerlessStartJobOperator,
    EmrTerminateJobFlowOperator,
)
from airflow.providers.amazon.aws.sensors.emr import EmrJobFlowSensor, EmrServerlessJobSensor, EmrStepSensor
"""
OUR_IMPORTS = """\
from airflow_spark_async.emr.operators import (
    EmrAddStepsOperator,
    EmrCreateJobFlowOperator,
    EmrServerlessStartJobOperator,
    EmrTerminateJobFlowOperator,
)
from airflow_spark_async.emr.sensors import EmrJobFlowSensor, EmrServerlessJobSensor, EmrStepSensor
"""

# The shape of the amazon provider's own example DAG (example_emr.py), with short poll intervals.
DAG_BODY = """
import pendulum
from airflow.sdk import DAG

JOB_FLOW_OVERRIDES = {{
    "Name": "PiCalc",
    "ReleaseLabel": "emr-7.5.0",
    "Applications": [{{"Name": "Spark"}}],
    "Instances": {{
        "InstanceGroups": [
            {{"Name": "Primary node", "Market": "ON_DEMAND", "InstanceRole": "MASTER",
              "InstanceType": "m5.xlarge", "InstanceCount": 1}},
        ],
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    }},
    "JobFlowRole": "EMR_EC2_DefaultRole",
    "ServiceRole": "EMR_DefaultRole",
}}
SPARK_STEPS = [
    {{
        "Name": "calculate_pi",
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {{"Jar": "command-runner.jar", "Args": ["spark-submit", "{app}", "1", "0"]}},
    }}
]

with DAG(dag_id="emr_official_pattern", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False) as dag:
    create_job_flow = EmrCreateJobFlowOperator(
        task_id="create_job_flow", job_flow_overrides=JOB_FLOW_OVERRIDES, wait_for_completion=True, waiter_delay=2,
    )
    check_job_flow = EmrJobFlowSensor(
        task_id="check_job_flow", job_flow_id=create_job_flow.output, target_states=["WAITING", "RUNNING"],
        poke_interval=2,
    )
    add_steps = EmrAddStepsOperator(
        task_id="add_steps", job_flow_id=create_job_flow.output, steps=SPARK_STEPS, wait_for_completion=False,
    )
    wait_for_step = EmrStepSensor(
        task_id="wait_for_step",
        job_flow_id=create_job_flow.output,
        step_id="{{{{ task_instance.xcom_pull(task_ids='add_steps', key='return_value')[0] }}}}",
        poke_interval=2,
    )
    remove_cluster = EmrTerminateJobFlowOperator(
        task_id="remove_cluster", job_flow_id=create_job_flow.output, trigger_rule="all_done",
    )
    start_job = EmrServerlessStartJobOperator(
        task_id="start_job", application_id="{application_id}", execution_role_arn="{role}",
        job_driver={{"sparkSubmit": {{"entryPoint": "{app}", "entryPointArguments": ["1", "0"]}}}},
        wait_for_completion=False,
    )
    wait_for_job = EmrServerlessJobSensor(
        task_id="wait_for_job", application_id="{application_id}", job_run_id=start_job.output, poke_interval=2,
    )
    create_job_flow >> check_job_flow >> add_steps >> wait_for_step >> remove_cluster
    start_job >> wait_for_job
"""

RUNNER = """
import importlib.util, json, sys
from airflow.utils.db import initdb
initdb()
spec = importlib.util.spec_from_file_location("emr_official_pattern", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dag = module.dag
run = dag.test()
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
with create_session() as session:
    tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run.run_id)
    states = {ti.task_id: str(ti.state) for ti in tis}
print(json.dumps({"dag_run": str(run.state), "tasks": states}))
"""


def _dag_source(imports: str, application_id: str) -> str:
    return imports + DAG_BODY.format(app=APP, application_id=application_id, role=ROLE)


def test_the_dag_uses_only_official_arguments() -> None:
    namespace: dict[str, object] = {}
    exec(compile(_dag_source(OFFICIAL_IMPORTS, "app"), "official_dag.py", "exec"), namespace)
    assert {type(t).__module__ for t in namespace["dag"].tasks} == {  # type: ignore[attr-defined]
        "airflow.providers.amazon.aws.operators.emr", "airflow.providers.amazon.aws.sensors.emr"}


def test_the_official_dag_runs_with_only_the_imports_changed(aws: MotoAws, tmp_path: Path) -> None:
    application_id = aws.create_application("official-dag")
    source = _dag_source(OUR_IMPORTS, application_id)
    official = _dag_source(OFFICIAL_IMPORTS, application_id)
    assert source.replace(OUR_IMPORTS, "") == official.replace(OFFICIAL_IMPORTS, ""), "only the imports differ"
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "emr_official_pattern.py").write_text(source)
    runner = tmp_path / "runner.py"
    runner.write_text(textwrap.dedent(RUNNER))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    (tmp_path / "home").mkdir()  # Airflow 3.0 opens its SQLite file without making the folder
    env.update({
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_AWS_DEFAULT": aws.conn_json(),
        "PYTHONPATH": str(Path(__file__).parents[2]),
    })
    aws.proxy.clear()
    done = subprocess.run([sys.executable, str(runner), str(dags / "emr_official_pattern.py")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["dag_run"] == "success", outcome
    assert set(outcome["tasks"].values()) == {"success"}, outcome
    [cluster_id] = {body["JobFlowIds"][0] for body in aws.proxy.requests_of("TerminateJobFlows")}
    assert aws.emr.clusters[cluster_id].state == "TERMINATED"
    assert [s.state for s in aws.steps(cluster_id)] == ["COMPLETED"]
    assert [r.state for r in aws.serverless.job_runs[application_id]] == ["SUCCESS"]
