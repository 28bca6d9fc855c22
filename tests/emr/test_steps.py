"""EMR steps against moto's server: what the operator adds, waits for, reattaches to and cancels."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from airflow_spark_async.core.errors import ConfigurationError, RequestRejected, ServerError
from airflow_spark_async.core.http import close_loop_sessions
from airflow_spark_async.core.operator import SparkJobFailed
from airflow_spark_async.core.runtime import get_backend, run_sync
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.emr.ids import StepsRef, parse_tag
from airflow_spark_async.emr.operators import EmrAddStepsOperator, EmrStepsOperator
from airflow_spark_async.emr.spark import spark_step
from airflow_spark_async.emr.steps import EmrStepsBackend
from tests.conformance.harness import FakeTI, defer, rebuild, run_to_end, run_trigger
from tests.emr.moto_aws import APP, MotoAws, start_then_kill, wait_until


def _ti(task: str = "steps") -> FakeTI:
    return FakeTI(task_id=task, run_id=f"manual__{uuid.uuid4().hex[:8]}")


def _raw_step(name: str, seconds: float, code: int = 0) -> dict[str, Any]:
    return {
        "Name": name,
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["spark-submit", APP, str(seconds), str(code)]},
    }


def test_spark_job_becomes_a_spark_submit_step_through_command_runner() -> None:
    job = SparkJob(application="s3://code/app.py", args=["--day", "2024-01-01"], conf={"spark.x": "1"},
                   py_files=["s3://code/lib.zip"], packages=["org.a:b:1"], driver_memory="2g", num_executors=4,
                   env={"STAGE": "prod"}, name="daily")
    step = spark_step(job)
    args = step["HadoopJarStep"]["Args"]
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar" and step["ActionOnFailure"] == "CONTINUE"
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert args[-3:] == ["s3://code/app.py", "--day", "2024-01-01"], "the application and its args come last"
    pairs = {args[i + 1] for i, a in enumerate(args) if a == "--conf"}
    assert {"spark.x=1", "spark.driver.memory=2g", "spark.executor.instances=4", "spark.jars.packages=org.a:b:1",
            "spark.yarn.appMasterEnv.STAGE=prod", "spark.executorEnv.STAGE=prod", "spark.app.name=daily"} <= pairs
    assert args[args.index("--py-files") + 1] == "s3://code/lib.zip"
    client = spark_step(job, deploy_mode="client")["HadoopJarStep"]["Args"]
    assert not any("appMasterEnv" in a for a in client), "client mode: the driver is the step's own process"


def test_operator_waits_for_every_step_it_added_and_returns_the_step_ids(aws: MotoAws, conn_id: str,
                                                                           cluster_id: str) -> None:
    op = EmrAddStepsOperator(task_id="three", aws_conn_id=conn_id, job_flow_id=cluster_id, deferrable=True,
                             steps=[_raw_step("a", 1), _raw_step("b", 2.5), _raw_step("c", 1.5)], waiter_delay=1)
    ti = _ti("three")
    result, events = run_to_end(op, ti)
    ref = StepsRef.parse(events[0]["job_id"])
    assert result == list(ref.step_ids) and len(result) == 3
    assert [aws.step(cluster_id, s).state for s in result] == ["COMPLETED"] * 3
    assert events[0]["elapsed"] >= 2.0, "the slowest step decides when the task resumes"
    assert ti.xcoms["job_flow_id"] == cluster_id
    polls = [body for body in aws.proxy.requests_of("ListSteps") if "StepIds" in body]
    assert polls and all(sorted(body["StepIds"]) == sorted(result) for body in polls), \
        "every poll asks for the three steps in one ListSteps call"
    names = [parse_tag(s.name) for s in aws.steps(cluster_id)]
    assert [(t.position, t.total) for t in names if t] == [(1, 3), (2, 3), (3, 3)]


def test_a_failed_step_explains_itself_and_the_task_waits_for_the_steps_still_running(
        aws: MotoAws, conn_id: str, cluster_id: str, capfd: pytest.CaptureFixture[str]) -> None:
    op = EmrStepsOperator(task_id="mixed", aws_conn_id=conn_id, job_flow_id=cluster_id, poll_interval=0.5,
                          deferrable=True, steps=[_raw_step("breaks", 0.5, code=3), _raw_step("slow", 3)])
    trigger = rebuild(defer(op, _ti("mixed")))
    events = run_trigger(trigger)
    ref = StepsRef.parse(events[0]["job_id"])
    assert [aws.step(cluster_id, s).state for s in ref.step_ids] == ["FAILED", "COMPLETED"]
    assert events[0]["elapsed"] >= 2.5, "with CONTINUE the second step runs on: the task must not leave it behind"
    with pytest.raises(SparkJobFailed) as failure:
        op.execute_complete({"ti": _ti()}, events[0])  # type: ignore[arg-type]
    text = str(failure.value)
    assert "'breaks'" in text and "Spark application exited with code 3" in text
    assert "failing on purpose" in text, "FailureDetails.Message"
    assert f"/steps/{ref.step_ids[0]}/stderr.gz" in text, "FailureDetails.LogFile"
    assert "failing on purpose" in capfd.readouterr().out, "the step's stderr tail from S3 reaches the task log"


def test_retry_rebuilds_the_whole_submission_from_the_step_names(aws: MotoAws, conn_id: str, cluster_id: str) -> None:
    steps = [_raw_step("quick", 0.2), _raw_step("long", 30)]
    ti = _ti("retry")
    first = defer(EmrStepsOperator(task_id="retry", aws_conn_id=conn_id, job_flow_id=cluster_id, steps=steps,
                                   deferrable=True), ti)
    ref = StepsRef.parse(first.job_id)
    wait_until(lambda: aws.step(cluster_id, ref.step_ids[0]).state == "COMPLETED", what="the first step to end")
    for _ in range(3):  # later steps of other tasks must not confuse the search
        aws.client("emr").add_job_flow_steps(JobFlowId=cluster_id, Steps=[_raw_step("other", 30)])
    aws.proxy.clear()
    second = defer(EmrStepsOperator(task_id="retry", aws_conn_id=conn_id, job_flow_id=cluster_id, steps=steps,
                                    deferrable=True), FakeTI(task_id="retry", run_id=ti.run_id, try_number=2))
    assert second.job_id == first.job_id, "both steps — the finished one too — belong to the reattached job"
    assert aws.proxy.ops("AddJobFlowSteps") == 0
    run_sync(lambda: _cancel(conn_id, first.job_id))


async def _cancel(conn_id: str, job_id: str) -> None:
    try:
        await (await get_backend(EmrStepsBackend, conn_id, {})).cancel(job_id)
    finally:
        await close_loop_sessions()


def test_without_waiting_the_official_operator_returns_the_step_ids_at_once(aws: MotoAws, conn_id: str,
                                                                               cluster_id: str) -> None:
    op = EmrAddStepsOperator(task_id="nowait", aws_conn_id=conn_id, job_flow_id=cluster_id, deferrable=False,
                             steps=json.dumps([_raw_step("x", 30)]))  # a string, as XCom or a .json file give it
    result = op.execute({"ti": _ti("nowait")})  # type: ignore[arg-type]
    assert isinstance(result, list) and len(result) == 1 and result[0].startswith("s-")
    assert aws.step(cluster_id, result[0]).state in ("RUNNING", "PENDING")
    run_sync(lambda: _cancel(conn_id, f"{cluster_id}:{result[0]}"))


def test_wait_for_completion_without_deferral_runs_the_same_loop_on_the_worker(aws: MotoAws, conn_id: str,
                                                                                cluster_id: str) -> None:
    op = EmrAddStepsOperator(task_id="sync", aws_conn_id=conn_id, job_flow_id=cluster_id, deferrable=False,
                             wait_for_completion=True, waiter_delay=1, job=SparkJob(application=APP, args=["1", "0"]))
    result = op.execute({"ti": _ti("sync")})  # type: ignore[arg-type]
    assert aws.step(cluster_id, result[0]).state == "COMPLETED"


def test_job_flow_name_must_match_exactly_one_cluster_before_anything_is_added(aws: MotoAws, conn_id: str) -> None:
    name = f"named-{uuid.uuid4().hex[:6]}"
    cluster_id = aws.create_cluster(name)
    op = EmrAddStepsOperator(task_id="byname", aws_conn_id=conn_id, job_flow_name=name, cluster_states=["WAITING"],
                             steps=[_raw_step("x", 0.5)], deferrable=True)
    trigger = defer(op, _ti("byname"))
    assert StepsRef.parse(trigger.job_id).cluster_id == cluster_id
    aws.create_cluster(name)
    aws.proxy.clear()
    with pytest.raises(ConfigurationError, match="2 clusters"):
        defer(EmrAddStepsOperator(task_id="byname", aws_conn_id=conn_id, job_flow_name=name,
                                  steps=[_raw_step("x", 0.5)], deferrable=True), _ti("byname"))
    assert aws.proxy.ops("AddJobFlowSteps") == 0


def test_steps_are_not_added_to_a_terminated_cluster(aws: MotoAws, conn_id: str, cluster_id: str) -> None:
    aws.terminate_cluster(cluster_id)
    op = EmrStepsOperator(task_id="late", aws_conn_id=conn_id, job_flow_id=cluster_id, steps=[_raw_step("x", 1)])
    with pytest.raises(RequestRejected, match=r"TERMINATED .*Terminated by user request"):
        op.execute({"ti": _ti("late")})  # type: ignore[arg-type]
    assert aws.proxy.ops("AddJobFlowSteps") == 0


def test_kill_sends_cancel_steps_with_send_interrupt_for_every_step(aws: MotoAws, conn_id: str,
                                                                     cluster_id: str) -> None:
    op = EmrStepsOperator(task_id="kill", aws_conn_id=conn_id, job_flow_id=cluster_id, deferrable=True,
                          steps=[_raw_step("a", 60), _raw_step("b", 60)])
    trigger = rebuild(defer(op, _ti("kill")))

    start_then_kill(trigger, after=1)
    ref = StepsRef.parse(trigger.job_id)
    [request] = aws.cancel_requests[-1:]
    assert request == {"ClusterId": cluster_id, "StepIds": list(ref.step_ids),
                       "StepCancellationOption": "SEND_INTERRUPT"}
    wait_until(lambda: {aws.step(cluster_id, s).state for s in ref.step_ids} == {"CANCELLED"}, what="cancellation")


def test_cancel_steps_against_stock_moto_is_retried_then_reported(stock_aws: MotoAws) -> None:
    """moto does not implement CancelSteps (HTTP 500). What this can show: the request our cancel
    sends, its bounded retries, and a clear error. What it cannot: EMR interrupting the step."""
    cluster_id = stock_aws.create_cluster("stock")
    step_id = stock_aws.client("emr").add_job_flow_steps(JobFlowId=cluster_id,
                                                         Steps=[_raw_step("x", 60)])["StepIds"][0]
    with stock_aws.connection("stock_moto") as conn_id:
        with pytest.raises(ServerError, match=r"CancelSteps.*500"):
            run_sync(lambda: _cancel(conn_id, f"{cluster_id}:{step_id}"))
    assert stock_aws.proxy.ops("CancelSteps") == 3, "a transient error is retried a bounded number of times"
    assert stock_aws.step(cluster_id, step_id).state == "RUNNING", "moto cannot show the interruption"
