"""EMR clusters against moto's server: create and wait, reattach, terminate, and what becomes of a
step whose cluster is terminated under it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from airflow_spark_async.core.airflow_versions import TaskDeferred
from airflow_spark_async.core.ledger import MemoryLedger
from airflow_spark_async.core.operator import SparkJobFailed
from airflow_spark_async.emr.clusters import KEY_TAG
from airflow_spark_async.emr.ids import StepsRef
from airflow_spark_async.emr.operators import EmrCreateJobFlowOperator, EmrStepsOperator, EmrTerminateJobFlowOperator
from airflow_spark_async.emr.sensors import EmrJobFlowSensor, EmrStepSensor
from tests.conformance.harness import FakeTI, defer, rebuild, run_to_end, run_trigger
from tests.emr.moto_aws import LOG_BUCKET, MotoAws, aws_fault, start_then_kill
from tests.emr.test_steps import _raw_step


def _ti(task: str) -> FakeTI:
    return FakeTI(task_id=task, run_id=f"manual__{uuid.uuid4().hex[:8]}")


def _overrides(name: str) -> dict[str, Any]:
    return {
        "Name": name,
        "ReleaseLabel": "emr-7.5.0",
        "LogUri": f"s3://{LOG_BUCKET}/logs/",
        "Applications": [{"Name": "Spark"}],
        "Instances": {"KeepJobFlowAliveWhenNoSteps": True, "InstanceCount": 1, "MasterInstanceType": "m5.xlarge"},
        "JobFlowRole": "EMR_EC2_DefaultRole",
        "ServiceRole": "EMR_DefaultRole",
    }


def _sensor_events(sensor: Any, ti: FakeTI) -> list[dict[str, Any]]:
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"ti": ti})
    return run_trigger(rebuild(deferred.value.trigger))  # type: ignore[arg-type]


def test_create_cluster_defers_until_it_is_waiting_and_tags_it_with_the_key(aws: MotoAws, conn_id: str) -> None:
    name = f"create-{uuid.uuid4().hex[:6]}"
    op = EmrCreateJobFlowOperator(task_id="create", aws_conn_id=conn_id, emr_conn_id=None,
                                  job_flow_overrides=_overrides(name), wait_for_completion=True, deferrable=True,
                                  waiter_delay=1, ledger=MemoryLedger())
    ti = _ti("create")
    trigger = rebuild(defer(op, ti))
    cluster_id = trigger.job_id
    assert aws.emr.clusters[cluster_id].state == "STARTING" and trigger.stop_states == {"WAITING", "RUNNING"}
    events = run_trigger(trigger)
    assert events[0]["status"] == "success" and events[0]["backend_state"] == "WAITING"
    assert op.execute_complete({"ti": ti}, events[0]) == cluster_id  # type: ignore[arg-type]
    assert aws.emr.clusters[cluster_id]._tags[KEY_TAG].startswith("asa-")
    assert ti.xcoms["_link_EmrClusterLink"].endswith(f"#/clusterDetails/{cluster_id}")


def test_create_cluster_retry_reattaches_through_the_key_ledger(aws: MotoAws, conn_id: str) -> None:
    ledger = MemoryLedger()
    name = f"retry-{uuid.uuid4().hex[:6]}"
    ti = _ti("create")

    def op() -> EmrCreateJobFlowOperator:
        return EmrCreateJobFlowOperator(task_id="create", aws_conn_id=conn_id, emr_conn_id=None,
                                        job_flow_overrides=_overrides(name), wait_for_completion=True,
                                        deferrable=True, ledger=ledger)

    first = defer(op(), ti)
    second = defer(op(), FakeTI(task_id="create", run_id=ti.run_id, try_number=2))
    assert second.job_id == first.job_id and aws.proxy.ops("RunJobFlow") == 1
    aws.terminate_cluster(first.job_id)
    third = defer(op(), FakeTI(task_id="create", run_id=ti.run_id, try_number=3))
    assert third.job_id != first.job_id, "a terminated cluster is never this try's cluster"


def test_a_cluster_that_fails_to_bootstrap_fails_the_task_with_its_reason(aws: MotoAws, conn_id: str) -> None:
    name = f"broken-{uuid.uuid4().hex[:6]}"
    aws.startup_failures[name] = "Master instance failed bootstrap action 1 with non-zero exit code"
    op = EmrCreateJobFlowOperator(task_id="create", aws_conn_id=conn_id, emr_conn_id=None, deferrable=True,
                                  job_flow_overrides=_overrides(name), wait_for_completion=True, waiter_delay=1,
                                  ledger=MemoryLedger())
    with pytest.raises(SparkJobFailed, match=r"TERMINATED_WITH_ERRORS: BOOTSTRAP_FAILURE: Master instance failed"):
        run_to_end(op, _ti("create"))
    assert aws.proxy.ops("TerminateJobFlows") == 0, "an ended cluster is not terminated again"


def test_killing_the_create_task_terminates_its_cluster(aws: MotoAws, conn_id: str) -> None:
    op = EmrCreateJobFlowOperator(task_id="create", aws_conn_id=conn_id, emr_conn_id=None, deferrable=True,
                                  job_flow_overrides=_overrides("killed"), wait_for_completion=True,
                                  ledger=MemoryLedger())
    aws.startup_seconds = 30
    try:
        trigger = rebuild(defer(op, _ti("create")))

        start_then_kill(trigger)
    finally:
        aws.startup_seconds = 1.0
    assert aws.emr.clusters[trigger.job_id].state == "TERMINATED"


def test_terminate_operator_defers_until_the_cluster_is_terminated(aws: MotoAws, conn_id: str,
                                                                   cluster_id: str) -> None:
    op = EmrTerminateJobFlowOperator(task_id="terminate", aws_conn_id=conn_id, job_flow_id=cluster_id,
                                     deferrable=True, waiter_delay=1, trigger_rule="all_done")
    ti = _ti("terminate")
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": ti})  # type: ignore[arg-type]
    assert aws.proxy.requests_of("TerminateJobFlows") == [{"JobFlowIds": [cluster_id]}]
    events = run_trigger(rebuild(deferred.value.trigger))  # type: ignore[arg-type]
    assert events[0]["backend_state"] == "TERMINATED"
    op.execute_complete({"ti": ti}, events[0])  # type: ignore[arg-type]


def test_terminate_operator_builds_its_trigger_through_the_trigger_kwargs_hook(aws: MotoAws, conn_id: str,
                                                                              cluster_id: str) -> None:
    """One place builds trigger kwargs (core's ``trigger_kwargs``): a subclass that adds one
    argument there must see it in the trigger, as it would for every other operator."""

    class Tagged(EmrTerminateJobFlowOperator):
        def trigger_kwargs(self, job_id: str, **fields: Any) -> dict[str, Any]:
            return {**super().trigger_kwargs(job_id, **fields), "failure_states": ["TERMINATED_WITH_ERRORS"]}

    op = Tagged(task_id="terminate", aws_conn_id=conn_id, job_flow_id=cluster_id, deferrable=True, waiter_delay=1)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": _ti("terminate")})  # type: ignore[arg-type]
    kwargs = deferred.value.trigger.serialize()[1]
    assert "TERMINATED_WITH_ERRORS" in kwargs["failure_states"], kwargs
    assert kwargs["owns_job"] is False and "TERMINATED" in kwargs["target_states"]
    assert kwargs["policy"]["interval"] == 1 and kwargs["conn_id"] == conn_id


def test_job_flow_sensor_waits_for_ready_and_for_terminated(aws: MotoAws, conn_id: str, cluster_id: str) -> None:
    ready = EmrJobFlowSensor(task_id="ready", aws_conn_id=conn_id, job_flow_id=cluster_id,
                             target_states=["WAITING", "RUNNING"], poke_interval=1)
    events = _sensor_events(ready, _ti("ready"))
    assert ready.execute_complete({"ti": _ti("ready")}, events[0]) == cluster_id  # type: ignore[arg-type]
    gone = EmrJobFlowSensor(task_id="gone", aws_conn_id=conn_id, job_flow_id=cluster_id, poke_interval=1)
    aws.terminate_cluster(cluster_id)
    events = _sensor_events(gone, _ti("gone"))
    assert events[0]["backend_state"] == "TERMINATED"
    gone.execute_complete({"ti": _ti("gone")}, events[0])  # type: ignore[arg-type]


def test_a_cluster_terminated_under_a_running_step_fails_the_task_with_the_clusters_reason(
        aws: MotoAws, conn_id: str, cluster_id: str) -> None:
    """As EMR does it: the cluster's termination cancels the step; the failure says why."""
    op = EmrStepsOperator(task_id="orphaned", aws_conn_id=conn_id, job_flow_id=cluster_id, poll_interval=0.5,
                          steps=[_raw_step("long", 60)], deferrable=True)
    trigger = rebuild(defer(op, _ti("orphaned")))
    aws.terminate_cluster(cluster_id, code="INSTANCE_FAILURE", message="Master node lost")
    events = run_trigger(trigger)
    with pytest.raises(SparkJobFailed) as failure:
        op.execute_complete({"ti": _ti("orphaned")}, events[0])  # type: ignore[arg-type]
    assert "CANCELLED" in str(failure.value)
    assert f"cluster {cluster_id} is TERMINATED (INSTANCE_FAILURE: Master node lost)" in str(failure.value)


def test_a_step_left_running_on_a_terminated_cluster_is_noticed(stock_aws: MotoAws) -> None:
    """moto leaves the step RUNNING when its cluster terminates; the periodic cluster check ends the
    watch anyway instead of polling a dead cluster's step until the deadline."""
    cluster_id = stock_aws.create_cluster("stock-orphan")
    with stock_aws.connection("stock_orphan") as conn_id:
        op = EmrStepsOperator(task_id="stuck", aws_conn_id=conn_id, job_flow_id=cluster_id, poll_interval=0.5,
                              steps=[_raw_step("long", 600)], deferrable=True,
                              backend_options={"cluster_check_interval": 1})
        trigger = rebuild(defer(op, _ti("stuck")))
        stock_aws.terminate_cluster(cluster_id)
        events = run_trigger(trigger)
    step_id = StepsRef.parse(trigger.job_id).step_ids[0]
    assert stock_aws.step(cluster_id, step_id).state == "RUNNING"
    assert events[0]["status"] == "failed" and events[0]["backend_state"] == "CLUSTER_TERMINATED"
    assert "Terminated by user request" in events[0]["message"]
    sensor = EmrStepSensor(task_id="s", aws_conn_id="unused", job_flow_id=cluster_id, step_id=step_id)
    with pytest.raises(SparkJobFailed, match="CLUSTER_TERMINATED"):
        sensor.execute_complete({"ti": _ti("s")}, events[0])  # type: ignore[arg-type]


def test_the_test_button_lists_active_clusters_with_the_connections_credentials(aws: MotoAws, conn_id: str,
                                                                                 cluster_id: str) -> None:
    from airflow_spark_async.emr.hook import EmrAsyncHook

    ok, message = EmrAsyncHook(aws_conn_id=conn_id).test_connection()
    assert ok and message.startswith("EMR in us-east-1 answered:") and "active cluster(s)" in message, message
    aws.proxy.inject(aws_fault("denied", 1, "ListClusters"))
    ok, message = EmrAsyncHook(aws_conn_id=conn_id).test_connection()
    assert not ok and "AuthError" in message and "AccessDeniedException" in message
