"""A DAG written for the official Livy provider, moved to deferrable operators by its imports only.

Before, with apache-airflow-providers-apache-livy::

    from airflow.providers.apache.livy.operators.livy import LivyOperator
    from airflow.providers.apache.livy.sensors.livy import LivySensor

After — nothing else in the file changed::

    from airflow_spark_async.livy import LivyBatchOperator as LivyOperator
    from airflow_spark_async.livy import LivyBatchSensor as LivySensor

What the tasks gain: ``pi`` waits in the triggerer (no worker slot while Spark runs), a retry
reattaches to its batch instead of submitting a second one, marking it failed deletes the batch,
and the task log shows the end of the batch log. ``submit_report`` keeps the official meaning of
``polling_interval=0`` — submit and return the batch id — and ``wait_for_report`` waits for that
batch's termination in the triggerer, as ``LivySensor`` did on a worker.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_spark_async.livy import LivyBatchOperator as LivyOperator
from airflow_spark_async.livy import LivyBatchSensor as LivySensor

with DAG(
    dag_id="livy_migrated_from_official",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["airflow-spark-async", "livy", "example"],
) as dag:
    pi = LivyOperator(
        task_id="pi",
        file="/opt/spark/examples/jars/spark-examples.jar",
        class_name="org.apache.spark.examples.SparkPi",
        args=[100],
        num_executors=1,
        conf={"spark.shuffle.compress": "false"},
        polling_interval=30,
        deferrable=True,
    )
    submit_report = LivyOperator(
        task_id="submit_report",
        file="hdfs:///jobs/report.py",
        py_files=["hdfs:///jobs/report_lib.zip"],
        args=["--day", "{{ ds }}"],
        queue="reports",
        proxy_user="reporting",
        polling_interval=0,
    )
    wait_for_report = LivySensor(
        task_id="wait_for_report",
        batch_id="{{ ti.xcom_pull(task_ids='submit_report') }}",
        poke_interval=60,
        timeout=6 * 3600,
    )
    pi >> submit_report >> wait_for_report
