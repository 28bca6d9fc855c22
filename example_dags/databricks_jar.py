"""A JVM Spark application on Databricks, and a multi-task run whose failure names its tasks.

* ``spark_pi`` is a ``spark_jar_task``: the main class and its parameters, the jar as a library
  (the official operator's arguments, unchanged).
* ``ingest_and_aggregate`` passes the whole ``runs/submit`` body as ``json``: two tasks, the
  second depending on the first. If any task fails, the Airflow task fails with every failed
  task named with its own error and trimmed stack trace, and the per-task states.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_spark_async.databricks import DatabricksSubmitRunOperator

CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 2}
JAR = "dbfs:/airflow-spark-async/jars/spark-examples_2.12-3.5.1.jar"
DAY = "{{ dag_run.run_after | ds }}"  # manual runs have no logical date in Airflow 3, so no {{ ds }}

with DAG(
    dag_id="databricks_jar",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["airflow-spark-async", "databricks", "example"],
) as dag:
    spark_pi = DatabricksSubmitRunOperator(
        task_id="spark_pi",
        new_cluster=CLUSTER,
        spark_jar_task={"main_class_name": "org.apache.spark.examples.SparkPi", "parameters": ["100"]},
        libraries=[{"jar": JAR}],
        polling_period_seconds=10,
        deferrable=True,
    )
    pipeline = DatabricksSubmitRunOperator(
        task_id="ingest_and_aggregate",
        json={
            "run_name": "ingest and aggregate " + DAY,
            "timeout_seconds": 3600,
            "tasks": [
                {
                    "task_key": "ingest",
                    "new_cluster": CLUSTER,
                    "spark_jar_task": {"main_class_name": "com.example.Ingest", "parameters": [DAY]},
                    "libraries": [{"jar": "dbfs:/airflow-spark-async/jars/pipeline.jar"}],
                },
                {
                    "task_key": "aggregate",
                    "depends_on": [{"task_key": "ingest"}],
                    "new_cluster": CLUSTER,
                    "spark_jar_task": {"main_class_name": "com.example.Aggregate", "parameters": [DAY]},
                    "libraries": [{"jar": "dbfs:/airflow-spark-async/jars/pipeline.jar"}],
                },
            ],
        },
        polling_period_seconds=10,
        deferrable=True,
    )
    spark_pi >> pipeline
