"""Conformance harness for EMR Serverless job runs: moto's server, driven like the service, behind
an AWS-aware fault proxy (see tests/emr/moto_aws.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from airflow_spark_async.emr.ids import JobRunRef
from airflow_spark_async.emr.operators import EmrServerlessJobOperator
from airflow_spark_async.emr.sensors import EmrServerlessJobSensor
from tests.conformance.harness import Harness, operator_factory, sensor_factory
from tests.emr.moto_aws import APP, LOG_BUCKET, ROLE, MotoAws


@pytest.fixture(scope="session")
def emr_serverless_harness() -> Iterator[Harness]:
    conn_id = "conformance_emr_serverless"
    with MotoAws() as aws, aws.connection(conn_id):
        application_id = aws.create_application("conformance")
        logs = {"monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": f"s3://{LOG_BUCKET}/serverless/"}}}

        make_operator = operator_factory(
            EmrServerlessJobOperator, APP, aws_conn_id=conn_id, application_id=application_id,
            execution_role_arn=ROLE, configuration_overrides=logs,
        )

        def remote_state(job_id: str) -> str:
            ref = JobRunRef.parse(job_id)
            return str(aws.job_run(ref.application_id, ref.job_run_id).state)

        yield Harness(
            name="emr_serverless",
            make_operator=make_operator,
            proxies=[aws.proxy],
            submit_path="StartJobRun",
            cancel_path="CancelJobRun",
            remote_state=remote_state,
            cancelled_states={"CANCELLED", "CANCELLING"},
            failure_text="ExitCode: 3",
            conn_id=conn_id,
            reattach_by="backend",
            make_sensor=sensor_factory(EmrServerlessJobSensor,
                                       lambda job_id: dataclasses.asdict(JobRunRef.parse(job_id)), aws_conn_id=conn_id),
            extra={"aws": aws, "application_id": application_id},
        )
