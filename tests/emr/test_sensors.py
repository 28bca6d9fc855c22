"""The deferrable step and job-run sensors honour target and failed states while deferred."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from airflow_spark_async.core.airflow_versions import TaskDeferred
from airflow_spark_async.core.operator import SparkJobFailed
from airflow_spark_async.emr.sensors import EmrServerlessJobSensor, EmrStepSensor
from tests.conformance.harness import FakeTI, rebuild, run_trigger
from tests.emr.moto_aws import APP, ROLE, MotoAws, start_then_kill, wait_until
from tests.emr.test_steps import _raw_step


def _ti(task: str) -> FakeTI:
    return FakeTI(task_id=task, run_id=f"manual__{uuid.uuid4().hex[:8]}")


def _deferred(sensor: Any) -> Any:
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"ti": _ti(sensor.task_id)})
    return rebuild(deferred.value.trigger)


def _add_step(aws: MotoAws, cluster_id: str, seconds: float, code: int = 0) -> str:
    return str(aws.client("emr").add_job_flow_steps(JobFlowId=cluster_id,
                                                    Steps=[_raw_step("watched", seconds, code)])["StepIds"][0])


def test_a_non_terminal_target_state_resumes_the_sensor_while_the_step_runs(aws: MotoAws, conn_id: str,
                                                                              cluster_id: str) -> None:
    step_id = _add_step(aws, cluster_id, 30)
    sensor = EmrStepSensor(task_id="running", aws_conn_id=conn_id, job_flow_id=cluster_id, step_id=step_id,
                           target_states=["RUNNING"], poke_interval=1)
    events = run_trigger(_deferred(sensor))
    assert events[0]["backend_state"] == "RUNNING" and aws.step(cluster_id, step_id).state == "RUNNING"
    sensor.execute_complete({"ti": _ti("running")}, events[0])  # type: ignore[arg-type]


def test_a_failed_state_fails_the_sensor_while_deferred_with_emrs_explanation(aws: MotoAws, conn_id: str,
                                                                               cluster_id: str) -> None:
    step_id = _add_step(aws, cluster_id, 0.5, code=3)
    sensor = EmrStepSensor(task_id="failing", aws_conn_id=conn_id, job_flow_id=cluster_id, step_id=step_id,
                           poke_interval=1)
    events = run_trigger(_deferred(sensor))
    with pytest.raises(SparkJobFailed, match=r"FAILED.*Spark application exited with code 3"):
        sensor.execute_complete({"ti": _ti("failing")}, events[0])  # type: ignore[arg-type]


def test_a_custom_non_terminal_failed_state_stops_the_watch(aws: MotoAws, conn_id: str, cluster_id: str) -> None:
    """The official deferrable sensor ignores failed_states until the step ends; this one stops at once."""
    step_id = _add_step(aws, cluster_id, 30)
    sensor = EmrStepSensor(task_id="cancelpending", aws_conn_id=conn_id, job_flow_id=cluster_id, step_id=step_id,
                           failed_states=["CANCEL_PENDING"], poke_interval=1)
    trigger = _deferred(sensor)
    aws.held.add(step_id)  # EMR may take its time to interrupt a step: it stays CANCEL_PENDING
    aws.set_step(aws.step(cluster_id, step_id), "CANCEL_PENDING")
    events = run_trigger(trigger)
    assert events[0]["backend_state"] == "CANCEL_PENDING"
    with pytest.raises(SparkJobFailed, match="is CANCEL_PENDING"):
        sensor.execute_complete({"ti": _ti("cancelpending")}, events[0])  # type: ignore[arg-type]
    aws.set_step(aws.step(cluster_id, step_id), "CANCELLED")


def test_killing_a_sensor_never_cancels_the_step_it_watches(aws: MotoAws, conn_id: str, cluster_id: str) -> None:
    step_id = _add_step(aws, cluster_id, 30)
    trigger = _deferred(EmrStepSensor(task_id="watch", aws_conn_id=conn_id, job_flow_id=cluster_id,
                                      step_id=step_id, poke_interval=1))

    start_then_kill(trigger)
    assert aws.proxy.ops("CancelSteps") == 0 and aws.step(cluster_id, step_id).state == "RUNNING"
    aws.set_step(aws.step(cluster_id, step_id), "CANCELLED")


def test_templated_ids_are_rendered_before_the_job_id_is_built(aws: MotoAws, conn_id: str, cluster_id: str) -> None:
    step_id = _add_step(aws, cluster_id, 0.2)
    sensor = EmrStepSensor(task_id="templated", aws_conn_id=conn_id, job_flow_id="{{ cluster }}",
                           step_id="{{ step }}", poke_interval=1)
    sensor.render_template_fields({"cluster": cluster_id, "step": step_id})  # type: ignore[arg-type]
    assert sensor.job_id == f"{cluster_id}:{step_id}"
    wait_until(lambda: aws.step(cluster_id, step_id).state == "COMPLETED", what="the step")
    assert sensor.poke({"ti": _ti("templated")}) is True  # type: ignore[arg-type]


def test_serverless_job_sensor_waits_for_success(aws: MotoAws, conn_id: str, application_id: str) -> None:
    run = aws.client("emr-serverless").start_job_run(
        applicationId=application_id, executionRoleArn=ROLE, clientToken=uuid.uuid4().hex,
        jobDriver={"sparkSubmit": {"entryPoint": APP, "entryPointArguments": ["1", "0"]}})
    aws.job_run(application_id, run["jobRunId"]).state = "RUNNING"  # started outside the proxy
    sensor = EmrServerlessJobSensor(task_id="run", aws_conn_id=conn_id, application_id=application_id,
                                    job_run_id=run["jobRunId"], poke_interval=1)
    aws.owned.add(application_id)
    events = run_trigger(_deferred(sensor))
    assert events[0]["backend_state"] == "SUCCESS"
    sensor.execute_complete({"ti": _ti("run")}, events[0])  # type: ignore[arg-type]
