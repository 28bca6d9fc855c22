"""Conformance harness for EMR clusters (``EmrCreateJobFlowOperator`` waiting until the cluster is
ready, ``EmrJobFlowSensor``): moto's server, driven like EMR, behind an AWS-aware fault proxy.

A cluster is the job here: submit = ``RunJobFlow``, done = ``WAITING`` (the operator's
``wait_for_completion``), cancel = ``TerminateJobFlows``, found again by its key tag. Its one
bootstrap action runs the conformance app, so "runs SECONDS, then succeeds or fails" becomes
"bootstraps for SECONDS, then is ready or ``TERMINATED_WITH_ERRORS``" (see tests/emr/moto_aws.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_spark_async.core.ledger import MemoryLedger
from airflow_spark_async.core.operator import SparkJobOperator
from airflow_spark_async.emr.operators import EmrCreateJobFlowOperator
from airflow_spark_async.emr.sensors import EmrJobFlowSensor
from tests.conformance.harness import POLL, Harness, sensor_factory, sleep_args
from tests.emr.moto_aws import APP, LOG_BUCKET, MotoAws


@pytest.fixture(scope="session")
def emr_clusters_harness() -> Iterator[Harness]:
    conn_id = "conformance_emr_clusters"
    ledger = MemoryLedger()  # stands in for Airflow Variables, which outlive a task's tries
    with MotoAws() as aws, aws.connection(conn_id):

        def make_operator(task_id: str, kind: str, seconds: float, **overrides: Any) -> SparkJobOperator:
            cluster = {
                "Name": f"conformance-{task_id}-{uuid.uuid4().hex[:6]}",
                "ReleaseLabel": "emr-7.5.0",
                "LogUri": f"s3://{LOG_BUCKET}/logs/",
                "Applications": [{"Name": "Spark"}],
                "Instances": {"KeepJobFlowAliveWhenNoSteps": True, "InstanceCount": 1,
                              "MasterInstanceType": "m5.xlarge"},
                "BootstrapActions": [{"Name": "conformance-app", "ScriptBootstrapAction": {
                    "Path": APP, "Args": sleep_args(kind, seconds)}}],
                "JobFlowRole": "EMR_EC2_DefaultRole",
                "ServiceRole": "EMR_DefaultRole",
            }
            kwargs: dict[str, Any] = {"task_id": task_id, "aws_conn_id": conn_id, "emr_conn_id": None,
                                      "job_flow_overrides": cluster, "wait_for_completion": True,
                                      "poll_interval": POLL, "deferrable": True, "ledger": ledger}
            return EmrCreateJobFlowOperator(**{**kwargs, **overrides})

        yield Harness(
            name="emr_clusters",
            make_operator=make_operator,
            proxies=[aws.proxy],
            submit_path="RunJobFlow",
            cancel_path="TerminateJobFlows",
            remote_state=lambda cluster_id: str(aws.emr.clusters[cluster_id].state),
            cancelled_states={"TERMINATED"},
            failure_text="BOOTSTRAP_FAILURE: On the master instance, bootstrap action 1 returned a non-zero",
            conn_id=conn_id,
            reattach_by="backend",
            # the documented wait "until the cluster is ready"; its default waits until it terminated
            make_sensor=sensor_factory(EmrJobFlowSensor, lambda cluster_id: {"job_flow_id": cluster_id},
                                       aws_conn_id=conn_id, target_states=["WAITING", "RUNNING"]),
            driver_log=False,
            extra={"aws": aws},
        )
