"""End to end in a real Airflow (scheduler, dag-processor, triggerer, api-server; LocalExecutor;
SQLite) against the Databricks Jobs API test server, authenticated with OAuth M2M through
databricks-sdk in every process:

(a) worker slots are released while runs go on: six 45-second runs on two worker slots run
    side by side on Databricks and finish before the three waves that holding a slot per run
    would take;
(b) SIGKILL of the triggerer mid-wait, then a restart: the task completes with exactly one run;
(c) marking a deferred task failed cancels its run (``runs/cancel`` from the trigger's on_kill);
(d) the example DAGs (notebook, python, jar) run to success, the notebook's exit value in XCom.

Runs and polls are >= 5 s: Airflow 3.3.2 has a scheduler race for shorter deferrals (#66374).
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.airflow_stack import AirflowStack
from tests.servers.databricks_server import DatabricksServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RUN_SECONDS = 45

E2E_DAGS = '''
from datetime import datetime
from airflow.sdk import DAG
from airflow_spark_async.databricks import DatabricksSubmitRunOperator

APP = "dbfs:/apps/sleep_then_exit.py"  # the test server runs it for [seconds, exit code]
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}

with DAG("e2e_databricks_fan_out", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         params={"seconds": 20}):
    for i in range(6):
        DatabricksSubmitRunOperator(
            task_id=f"run_{i}", new_cluster=CLUSTER, polling_period_seconds=5, deferrable=True,
            spark_python_task={"python_file": APP, "parameters": ["{{ params.seconds }}", "0"]},
        )

with DAG("e2e_databricks_long", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         params={"seconds": 30}):
    DatabricksSubmitRunOperator(
        task_id="long", new_cluster=CLUSTER, polling_period_seconds=5, deferrable=True,
        spark_python_task={"python_file": APP, "parameters": ["{{ params.seconds }}", "0"]},
    )
'''


@pytest.fixture(scope="module")
def server() -> Iterator[DatabricksServer]:
    with DatabricksServer(default_seconds=8) as srv:
        srv.add_job("nightly-etl", [{"task_key": "etl", "existing_cluster_id": "0101-etl",
                                     "spark_python_task": {"python_file": "dbfs:/jobs/etl.py"}}])
        yield srv


@pytest.fixture(scope="module")
def stack(server: DatabricksServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    root = tmp_path_factory.mktemp("e2e-databricks")
    dags = root / "dags"
    dags.mkdir()
    for example in (ROOT / "example_dags").glob("databricks_*.py"):
        shutil.copy(example, dags / example.name)
    (dags / "e2e_databricks.py").write_text(E2E_DAGS)
    conn = {"conn_type": "databricks", "host": server.url, "login": server.client_id,
            "password": server.client_secret, "extra": {"service_principal_oauth": True}}
    env = {"AIRFLOW_CONN_DATABRICKS_DEFAULT": json.dumps(conn)}
    with AirflowStack(dags, parallelism=2, base_tmp_dir=root / "airflow", extra_env=env, dags_paused=False) as s:
        yield s


def _xcom(stack: AirflowStack, dag_id: str, run_id: str, task_id: str, key: str) -> object:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{stack._q(run_id)}/taskInstances/{task_id}/xcomEntries/{key}"
    value = stack.api("GET", path, params={"deserialize": True})["value"]
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{\"" else value


def _runs_named(server: DatabricksServer, name: str, since: float) -> list[int]:
    return [r.run_id for r in server.runs.values() if r.run_name == name and r.created >= since]


def test_a_worker_slots_are_free_while_runs_go_on(stack: AirflowStack, server: DatabricksServer) -> None:
    dag_id = "e2e_databricks_fan_out"
    stack.wait_for_dag(dag_id)
    run_id = f"fanout_{int(time.time())}"
    started_wall, started = time.time(), time.monotonic()
    stack.trigger_dag(dag_id, run_id=run_id, conf={"seconds": RUN_SECONDS})
    most_deferred = most_running = 0
    while stack.dag_run_state(dag_id, run_id) not in ("success", "failed"):
        states = [ti["state"] for ti in stack.task_instances(dag_id, run_id)]
        most_deferred = max(most_deferred, states.count("deferred"))
        runs = [r for i in range(6) for r in _runs_named(server, f"run_{i}", started_wall)]
        most_running = max(most_running, sum(server.life_cycle(r) == "RUNNING" for r in runs))
        assert time.monotonic() - started < 600, f"fan-out did not finish: {states}"
        time.sleep(1)
    makespan = time.monotonic() - started
    assert stack.dag_run_state(dag_id, run_id) == "success", stack.dump_logs()
    assert sum(len(_runs_named(server, f"run_{i}", started_wall)) for i in range(6)) == 6, "one run per task"
    # Two slots: holding a slot per run would allow two runs at a time, in three waves of RUN_SECONDS.
    assert most_deferred > 2, f"at most {most_deferred} tasks were deferred at once"
    assert most_running > 2, f"at most {most_running} Databricks runs ran at once on 2 worker slots"
    # The makespan is printed, not bounded: under load it measures the machine, while the two
    # counts above prove the slots were free whatever the load.
    print(f"\nE2E(a) makespan {makespan:.1f}s for 6 x {RUN_SECONDS}s Databricks runs on 2 worker slots; "
          f"up to {most_deferred} tasks deferred and {most_running} runs running at once")


def test_b_triggerer_sigkill_then_restart_completes_with_exactly_one_run(stack: AirflowStack,
                                                                         server: DatabricksServer) -> None:
    dag_id = "e2e_databricks_long"
    stack.wait_for_dag(dag_id)
    run_id, since = f"sigkill_{int(time.time())}", time.time()
    stack.trigger_dag(dag_id, run_id=run_id, conf={"seconds": 30})
    stack.wait_for_task_state(dag_id, run_id, "long", "deferred", timeout=120)
    # Kill the triggerer while it runs the trigger (its first poll is logged), not before it started it.
    databricks_run = int(str(_xcom(stack, dag_id, run_id, "long", "run_id")))
    stack.wait_for_trigger_to_run(dag_id, run_id, "long", f"Job {databricks_run} is ")
    stack.kill_triggerer(signal.SIGKILL)
    stack.start_triggerer()
    assert stack.wait_for_dag_run(dag_id, run_id, timeout=300) == "success", stack.dump_logs()
    runs = _runs_named(server, "long", since)
    assert len(runs) == 1, f"expected exactly one Databricks run, got {runs}"
    assert stack.task_instance(dag_id, run_id, "long")["try_number"] == 1
    assert _xcom(stack, dag_id, run_id, "long", "run_id") == runs[0]


def test_c_marking_a_deferred_task_failed_cancels_its_run(stack: AirflowStack, server: DatabricksServer) -> None:
    dag_id = "e2e_databricks_long"
    run_id = f"markfailed_{int(time.time())}"
    stack.trigger_dag(dag_id, run_id=run_id, conf={"seconds": 240})
    stack.wait_for_task_state(dag_id, run_id, "long", "deferred", timeout=120)
    databricks_run = int(str(_xcom(stack, dag_id, run_id, "long", "run_id")))
    # Wait until a triggerer runs the trigger (its first poll is logged): a task marked failed before
    # any triggerer picked its trigger up has no trigger whose on_kill could cancel — an Airflow gap,
    # see docs/databricks.md.
    stack.wait_for_trigger_to_run(dag_id, run_id, "long", f"Job {databricks_run} is ")
    stack.mark_task_failed(dag_id, run_id, "long")
    deadline = time.monotonic() + 60
    while (state := server.life_cycle(databricks_run)) != "CANCELED":
        if time.monotonic() > deadline:
            triggerer = "\n".join(line for line in stack.dump_logs(lines=400).splitlines()
                                  if "http.access" not in line and ("rigger" in line or "kill" in line))
            raise AssertionError(f"run {databricks_run} still {state} after mark-failed\n{triggerer[-8000:]}")
        time.sleep(1)
    assert server.count("POST", "/runs/cancel$") >= 1


def test_d_the_example_dags_run_to_success(stack: AirflowStack, server: DatabricksServer) -> None:
    runs = {}
    for dag_id in ("databricks_notebook", "databricks_python", "databricks_jar"):
        stack.wait_for_dag(dag_id)
        runs[dag_id] = f"example_{int(time.time())}"
        stack.trigger_dag(dag_id, run_id=runs[dag_id])
    for dag_id, run_id in runs.items():
        if stack.wait_for_dag_run(dag_id, run_id, timeout=300) != "success":
            logs = [stack.task_log(dag_id, run_id, ti["task_id"], try_number=max(1, ti["try_number"]))
                    for ti in stack.task_instances(dag_id, run_id) if ti["state"] != "success"]
            raise AssertionError(f"{dag_id} did not succeed:\n" + "\n\n".join(logs)[-8000:])
    output = _xcom(stack, "databricks_notebook", runs["databricks_notebook"], "daily_summary", "notebook_output")
    exit_value = output if isinstance(output, dict) else json.loads(str(output))
    assert exit_value["run_date"].count("-") == 2, output  # the notebook's exit value: its parameters, echoed
    assert server.rejected == [], "every request the examples sent matches databricks-sdk's models"
