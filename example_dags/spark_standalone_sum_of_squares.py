"""Run a PySpark job on a Spark standalone cluster without holding a worker slot.

The operator submits the application to the master's REST server in cluster mode and
defers: while Spark computes, the task waits in the triggerer and the worker slot is free.
``check_result`` then reads what the job wrote and checks it against the closed formula.

Run it locally with ``./dev demo`` (starts a cluster on 127.0.0.1 and a real Airflow).
Connection ``spark_standalone_default``: host 127.0.0.1, port 6066 (see docs/standalone.md).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, task

from airflow_spark_async import SparkJob
from airflow_spark_async.standalone import SparkStandaloneSubmitOperator

APP = Path(__file__).parent / "spark_apps" / "sum_of_squares.py"
OUTPUT_DIR = os.environ.get("SPARK_ASYNC_OUTPUT_DIR", "/tmp/airflow-spark-async-output")

with DAG(
    dag_id="spark_standalone_sum_of_squares",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"n": 1_000_000, "hold_seconds": 0},
    tags=["airflow-spark-async", "standalone", "example"],
) as dag:
    compute = SparkStandaloneSubmitOperator(
        task_id="sum_of_squares",
        job=SparkJob(
            application=f"file://{APP}",
            args=[
                "{{ params.n }}",
                OUTPUT_DIR + "/{{ run_id | replace(':', '-') | replace('+', '-') }}.json",
                "{{ params.hold_seconds }}",
            ],
            driver_memory="512m",
            executor_memory="512m",
            conf={"spark.cores.max": "1"},
        ),
        deferrable=True,
        poll_interval=5,
        job_timeout=timedelta(minutes=20),
        retries=1,
    )

    @task
    def check_result(run_id: str | None = None, params: dict | None = None) -> dict:
        """Read the job's output and check it against n(n+1)(2n+1)/6."""
        assert run_id is not None and params is not None
        path = Path(OUTPUT_DIR) / (run_id.replace(":", "-").replace("+", "-") + ".json")
        result = json.loads(path.read_text())
        n = int(params["n"])
        expected = n * (n + 1) * (2 * n + 1) // 6
        if result["sum_of_squares"] != expected:
            raise ValueError(f"Spark computed {result['sum_of_squares']}, expected {expected}")
        print(f"RESULT {path}: sum of squares 1..{n} = {expected} (checked)")
        return {"path": str(path), **result}

    compute >> check_result()
