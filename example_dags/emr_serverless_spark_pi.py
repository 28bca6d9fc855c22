"""Run a Spark job on EMR Serverless, waiting in the triggerer; the dashboard link opens its Spark UI.

``spark_pi`` starts a job run from the portable ``SparkJob`` (``sparkSubmit``: entry point,
arguments, and the spark-submit options as ``sparkSubmitParameters``) and defers until the run
ends. Killing the task cancels the run (``CancelJobRun``); a retry finds the run by the key in its
name; the driver's stdout/stderr tail reaches the task log from the S3 log location.

Needs an ``aws`` connection ``aws_default``, an application (param ``application_id``) and a job
role (param ``execution_role_arn``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_spark_async import SparkJob
from airflow_spark_async.emr.operators import EmrServerlessJobOperator

with DAG(
    dag_id="emr_serverless_spark_pi",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "application_id": "00fabcdexample",
        "execution_role_arn": "arn:aws:iam::123456789012:role/emr-serverless-job",
        "log_uri": "s3://my-emr-logs/serverless/",
        "slices": 100,
    },
    tags=["airflow-spark-async", "emr", "example"],
) as dag:
    EmrServerlessJobOperator(
        task_id="spark_pi",
        application_id="{{ params.application_id }}",
        execution_role_arn="{{ params.execution_role_arn }}",
        job=SparkJob(
            application="local:///usr/lib/spark/examples/jars/spark-examples.jar",
            main_class="org.apache.spark.examples.SparkPi",
            args=["{{ params.slices }}"],
            executor_cores=2,
        ),
        configuration_overrides={
            "monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": "{{ params.log_uri }}"}}
        },
        enable_application_ui_links=True,
        poll_interval=15,
        job_timeout=timedelta(hours=1),
        deferrable=True,
    )
