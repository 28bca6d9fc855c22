"""EMR Serverless job runs against moto's server: the request, the official arguments, links, kill."""

from __future__ import annotations

import asyncio
import shlex
import uuid

import pytest

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.http import close_loop_sessions
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.emr.ids import JobRunRef, parse_tag
from airflow_spark_async.emr.links import EmrServerlessDashboardLink
from airflow_spark_async.emr.operators import EmrServerlessJobOperator, EmrServerlessStartJobOperator
from airflow_spark_async.emr.spark import spark_submit_driver
from tests.conformance.harness import FakeTI, defer, rebuild, run_to_end, run_trigger
from tests.emr.moto_aws import APP, ROLE, MotoAws, start_then_kill


def _ti(task: str) -> FakeTI:
    return FakeTI(task_id=task, run_id=f"manual__{uuid.uuid4().hex[:8]}")


def test_spark_job_becomes_a_spark_submit_job_driver() -> None:
    job = SparkJob(application="s3://code/App.jar", main_class="com.example.Main", args=["a b", "c"],
                   jars=["s3://code/dep.jar"], conf={"spark.sql.shuffle.partitions": "8"}, executor_memory="4g",
                   env={"MODE": "x y"})
    submit = spark_submit_driver(job)["sparkSubmit"]
    assert submit["entryPoint"] == "s3://code/App.jar" and submit["entryPointArguments"] == ["a b", "c"]
    params = shlex.split(submit["sparkSubmitParameters"])
    assert params[:2] == ["--class", "com.example.Main"] and params[params.index("--jars") + 1] == "s3://code/dep.jar"
    confs = {params[i + 1] for i, p in enumerate(params) if p == "--conf"}
    assert {"spark.sql.shuffle.partitions=8", "spark.executor.memory=4g",
            "spark.emr-serverless.driverEnv.MODE=x y", "spark.executorEnv.MODE=x y"} <= confs


def test_official_arguments_reach_start_job_run_and_the_run_id_is_returned(aws: MotoAws, conn_id: str,
                                                                           application_id: str) -> None:
    driver = {"sparkSubmit": {"entryPoint": APP, "entryPointArguments": ["1", "0"],
                              "sparkSubmitParameters": "--conf spark.executor.cores=2"}}
    op = EmrServerlessStartJobOperator(
        task_id="official", aws_conn_id=conn_id, application_id=application_id, execution_role_arn=ROLE,
        job_driver=driver, config={"tags": {"team": "data"}, "executionTimeoutMinutes": 30, "name": "nightly"},
        deferrable=True, waiter_delay=1,
    )
    ti = _ti("official")
    result, events = run_to_end(op, ti)
    [request] = aws.proxy.requests_of("StartJobRun")
    assert request["jobDriver"] == driver and request["tags"] == {"team": "data"}
    assert request["executionTimeoutMinutes"] == 30 and request["executionRoleArn"] == ROLE
    tag = parse_tag(request["name"])
    assert request["name"].startswith("nightly [") and tag is not None
    assert request["clientToken"].startswith(tag.key), "the token carries the key (and the try number)"
    assert result == JobRunRef.parse(events[0]["job_id"]).job_run_id


def test_without_waiting_the_official_operator_returns_the_run_id_at_once(aws: MotoAws, conn_id: str,
                                                                          application_id: str) -> None:
    op = EmrServerlessStartJobOperator(task_id="nowait", aws_conn_id=conn_id, application_id=application_id,
                                       execution_role_arn=ROLE, wait_for_completion=False,
                                       job=SparkJob(application=APP, args=["30", "0"]))
    run_id = op.execute({"ti": _ti("nowait")})  # type: ignore[arg-type]
    assert aws.job_run(application_id, run_id).state in ("SUBMITTED", "RUNNING")
    aws.job_run(application_id, run_id).state = "CANCELLED"


def test_dashboard_link_asks_aws_for_a_fresh_url_on_each_click(aws: MotoAws, conn_id: str,
                                                               application_id: str) -> None:
    op = EmrServerlessJobOperator(task_id="ui", aws_conn_id=conn_id, application_id=application_id,
                                  execution_role_arn=ROLE, job=SparkJob(application=APP, args=["0.5", "0"]),
                                  enable_application_ui_links=True, deferrable=True, poll_interval=1)
    ti = _ti("ui")
    trigger = defer(op, ti)
    reference = ti.xcoms[EmrServerlessDashboardLink().xcom_key]
    assert "secret" not in str(reference).lower() and reference["job_id"] == trigger.job_id
    aws.proxy.clear()
    urls = [EmrServerlessDashboardLink.resolve(reference) for _ in range(2)]
    run_id = JobRunRef.parse(trigger.job_id).job_run_id
    assert all(run_id in url for url in urls) and aws.proxy.ops("GetDashboardForJobRun") == 2
    run_trigger(rebuild(trigger))


def test_dashboard_link_is_empty_not_an_error_when_aws_refuses(stock_aws: MotoAws) -> None:
    """moto has no GetDashboardForJobRun route (404): the page renders, without the link."""
    with stock_aws.connection("stock_dash") as conn_id:
        reference = EmrServerlessDashboardLink.reference(conn_id, "app:run", {})
        assert EmrServerlessDashboardLink.resolve(reference) == ""


def test_cancel_on_kill_false_leaves_the_run_alone(aws: MotoAws, conn_id: str, application_id: str) -> None:
    op = EmrServerlessStartJobOperator(task_id="keep", aws_conn_id=conn_id, application_id=application_id,
                                       execution_role_arn=ROLE, job=SparkJob(application=APP, args=["30", "0"]),
                                       cancel_on_kill=False, deferrable=True)
    trigger = rebuild(defer(op, _ti("keep")))
    assert trigger.owns_job is False

    start_then_kill(trigger)
    assert aws.proxy.ops("CancelJobRun") == 0
    ref = JobRunRef.parse(trigger.job_id)
    aws.job_run(ref.application_id, ref.job_run_id).state = "CANCELLED"


def test_a_stopped_application_without_auto_start_is_started_first(aws: MotoAws, conn_id: str,
                                                                   application_id: str) -> None:
    client = aws.client("emr-serverless")
    client.stop_application(applicationId=application_id)
    client.update_application(applicationId=application_id, autoStartConfiguration={"enabled": False})
    op = EmrServerlessJobOperator(task_id="start", aws_conn_id=conn_id, application_id=application_id,
                                  execution_role_arn=ROLE, job=SparkJob(application=APP, args=["0.3", "0"]),
                                  deferrable=True, poll_interval=1)
    run_to_end(op, _ti("start"))
    ops = aws.proxy.operations
    assert ops.index("StartApplication") < ops.index("StartJobRun")


def test_both_or_neither_of_job_and_job_driver_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="either job_driver or job"):
        EmrServerlessJobOperator(task_id="x", application_id="a", execution_role_arn=ROLE)


def test_watching_many_runs_of_one_application_costs_one_list_call_per_cycle(aws: MotoAws, conn_id: str,
                                                                             application_id: str) -> None:
    from airflow_spark_async.emr.triggers import EmrServerlessJobTrigger

    client = aws.client("emr-serverless")
    runs = [client.start_job_run(applicationId=application_id, executionRoleArn=ROLE, clientToken=f"t{i}",
                                 jobDriver={"sparkSubmit": {"entryPoint": APP, "entryPointArguments": ["2.5", "0"]}}
                                 )["jobRunId"] for i in range(5)]
    for run_id in runs:  # started outside the proxy: set what AWS would report
        aws.job_run(application_id, run_id).state = "RUNNING"
    aws.owned.add(application_id)
    triggers = [EmrServerlessJobTrigger(conn_id=conn_id, job_id=f"{application_id}:{r}", policy={"interval": 0.5})
                for r in runs]

    async def run_all() -> list[dict[str, object]]:
        try:
            return [e.payload for e in await asyncio.gather(*(anext(t.run()) for t in triggers))]
        finally:
            await close_loop_sessions()

    events = asyncio.run(run_all())
    assert [e["backend_state"] for e in events] == ["SUCCESS"] * 5
    lists, gets = aws.proxy.ops("ListJobRuns"), aws.proxy.ops("GetJobRun")
    assert gets <= 5 + 5, "each run is read on its own only at its first poll and when it ended"
    assert 3 <= lists <= 8, f"one ListJobRuns per 0.5 s cycle for all five runs, got {lists}"
