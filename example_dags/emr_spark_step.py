"""Run a Spark job as a step on a long-running EMR cluster, without holding a worker slot.

``spark_pi`` adds one step — the portable ``SparkJob`` turned into ``spark-submit`` through
``command-runner.jar`` — and defers: the triggerer polls the step (with every other step it
watches on that cluster, ten per ``ListSteps`` call) and resumes the task when it ends. Killing or
marking the task failed cancels the step (``CancelSteps``, ``SEND_INTERRUPT``); a retry finds the
step by the key in its name instead of adding it again; after ``job_timeout`` the step is cancelled.

Needs an ``aws`` connection ``aws_default`` and a running cluster (param ``cluster_id``). The
end-to-end tests run this DAG against moto's server.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_spark_async import SparkJob
from airflow_spark_async.emr.operators import EmrStepsOperator

with DAG(
    dag_id="emr_spark_step",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"cluster_id": "j-XXXXXXXXXXXXX", "slices": 100},
    tags=["airflow-spark-async", "emr", "example"],
) as dag:
    EmrStepsOperator(
        task_id="spark_pi",
        job_flow_id="{{ params.cluster_id }}",
        job=SparkJob(
            application="file:///usr/lib/spark/examples/jars/spark-examples.jar",
            main_class="org.apache.spark.examples.SparkPi",
            args=["{{ params.slices }}"],
        ),
        poll_interval=10,
        job_timeout=timedelta(hours=1),
        deferrable=True,
    )
