"""A DAG written for the official ``SparkSubmitOperator``, made deferrable by changing one import.

Before (apache-airflow-providers-apache-spark)::

    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

After::

    from airflow_spark_async.spark_submit import SparkSubmitOperator

Everything else — the arguments, the templated fields, the ``spark_default`` connection of type
``spark`` (host ``spark://<master>``, port 7077, extra ``{"deploy-mode": "cluster"}``) — stays. Instead
of a ``spark-submit`` JVM on the worker polling the driver, the operator posts the same submission to
the master's REST server (port 6066, extra ``rest-port`` to change it) and defers.

On the local stack (``./dev stack up``) the ``spark_default`` connection points at the stack's cluster.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, task

from airflow_spark_async.spark_submit import SparkSubmitOperator

APP = Path(__file__).parent / "spark_apps" / "sum_of_squares.py"
OUTPUT_DIR = os.environ.get("SPARK_ASYNC_OUTPUT_DIR", "/tmp/airflow-spark-async-output")
OUTPUT = OUTPUT_DIR + "/{{ run_id | replace(':', '-') | replace('+', '-') }}.json"

with DAG(
    dag_id="spark_standalone_migrated_from_spark_submit",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"n": 1_000_000},
    tags=["airflow-spark-async", "standalone", "spark-submit", "example"],
) as dag:
    compute = SparkSubmitOperator(
        task_id="sum_of_squares",
        application=f"file://{APP}",
        application_args=["{{ params.n }}", OUTPUT],
        conf={"spark.sql.shuffle.partitions": "4"},
        total_executor_cores=1,
        executor_memory="512m",
        driver_memory="512m",
        name="sum-of-squares",
        status_poll_interval=5,
        retries=1,
    )

    @task
    def check_result(run_id: str | None = None, params: dict | None = None) -> int:
        """Read what the job wrote and check it against n(n+1)(2n+1)/6."""
        assert run_id is not None and params is not None
        path = Path(OUTPUT_DIR) / (run_id.replace(":", "-").replace("+", "-") + ".json")
        n, got = int(params["n"]), json.loads(path.read_text())["sum_of_squares"]
        if got != n * (n + 1) * (2 * n + 1) // 6:
            raise ValueError(f"Spark computed {got}, expected {n * (n + 1) * (2 * n + 1) // 6}")
        return got

    compute >> check_result()
