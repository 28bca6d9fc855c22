"""A PySpark script on Databricks, twice: from the portable ``SparkJob`` and from a saved job.

* ``sum_of_squares`` runs ``SparkJob`` — the same spec the Spark standalone examples run on a
  laptop — as a ``spark_python_task`` on a new job cluster: only the operator and the cluster
  differ. It does not wait (``wait_for_termination=False``); ``wait_for_sum`` is the deferrable
  ``DatabricksRunSensor`` on its run id.
* ``nightly_etl`` starts the saved job named ``nightly-etl`` with ``python_params``, resolving the
  name through ``jobs/list`` like the official ``DatabricksRunNowOperator``.

Both wait in the triggerer; neither holds a worker slot while Spark computes.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_spark_async import SparkJob
from airflow_spark_async.databricks import (
    DatabricksRunNowOperator,
    DatabricksRunSensor,
    DatabricksSubmitRunOperator,
)

with DAG(
    dag_id="databricks_python",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"n": 1_000_000},
    tags=["airflow-spark-async", "databricks", "example"],
) as dag:
    submit = DatabricksSubmitRunOperator(
        task_id="sum_of_squares",
        job=SparkJob(
            application="dbfs:/airflow-spark-async/apps/sum_of_squares.py",
            args=["{{ params.n }}", "dbfs:/airflow-spark-async/output/{{ run_id | replace(':', '-') }}.json"],
            conf={"spark.sql.shuffle.partitions": "8"},
        ),
        new_cluster={"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1},
        wait_for_termination=False,
    )
    wait = DatabricksRunSensor(
        task_id="wait_for_sum",
        run_id="{{ ti.xcom_pull(task_ids='sum_of_squares', key='run_id') }}",
        poke_interval=10,
        timeout=3600,
    )
    etl = DatabricksRunNowOperator(
        task_id="nightly_etl",
        job_name="nightly-etl",
        python_params=["--date", "{{ dag_run.run_after | ds }}"],
        polling_period_seconds=10,
        deferrable=True,
    )
    submit >> wait >> etl
