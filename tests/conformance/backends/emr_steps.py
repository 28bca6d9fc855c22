"""Conformance harness for EMR steps: moto's server, driven like EMR, behind an AWS-aware fault
proxy (see tests/emr/moto_aws.py for what moto cannot do and how the proxy fills it in)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_spark_async.emr.ids import StepsRef
from airflow_spark_async.emr.operators import EmrStepsOperator
from airflow_spark_async.emr.sensors import EmrStepSensor
from tests.conformance.harness import Harness, operator_factory, sensor_factory
from tests.emr.moto_aws import APP, MotoAws


@pytest.fixture(scope="session")
def emr_steps_harness() -> Iterator[Harness]:
    conn_id = "conformance_emr_steps"
    with MotoAws() as aws, aws.connection(conn_id):
        cluster_id = aws.create_cluster("conformance")

        make_operator = operator_factory(EmrStepsOperator, APP, aws_conn_id=conn_id, job_flow_id=cluster_id)

        def remote_state(job_id: str) -> str:
            ref = StepsRef.parse(job_id)
            return str(aws.step(ref.cluster_id, ref.step_ids[0]).state)

        yield Harness(
            name="emr_steps",
            make_operator=make_operator,
            proxies=[aws.proxy],
            submit_path="AddJobFlowSteps",
            cancel_path="CancelSteps",
            remote_state=remote_state,
            cancelled_states={"CANCELLED"},
            failure_text="Spark application exited with code 3",
            conn_id=conn_id,
            reattach_by="backend",
            make_sensor=sensor_factory(EmrStepSensor, lambda job_id: {
                "job_flow_id": (ref := StepsRef.parse(job_id)).cluster_id, "step_id": ref.step_ids[0]},
                aws_conn_id=conn_id),
            extra={"aws": aws, "cluster_id": cluster_id},
        )
