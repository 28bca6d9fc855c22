"""A PySpark job through Apache Livy that computes a checkable answer, without holding a worker slot.

``sum_of_squares`` submits the same portable ``SparkJob`` the standalone example runs, as a Livy
batch (``POST /batches``), and defers: while Spark computes, the task waits in the triggerer.
``check_result`` reads what the job wrote and checks it with a plain Python loop.

Locally, the Livy test server stands in for Livy and runs each batch with spark-submit on the local
Spark cluster (``python -m tests.servers.livy_server --spark-master spark://127.0.0.1:7077``); the
end-to-end tests run this DAG that way. Connection ``livy_default``: host 127.0.0.1, port 8998
(see docs/livy.md). The output path must be readable by the Airflow worker that checks it — true on
a laptop; on a real cluster, point ``SPARK_ASYNC_OUTPUT_DIR`` at shared storage.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, task

from airflow_spark_async import SparkJob
from airflow_spark_async.livy import LivyBatchOperator

APP = Path(__file__).parent / "spark_apps" / "sum_of_squares.py"
OUTPUT_DIR = os.environ.get("SPARK_ASYNC_OUTPUT_DIR", "/tmp/airflow-spark-async-output")
OUTPUT = OUTPUT_DIR + "/livy-{{ run_id | replace(':', '-') | replace('+', '-') }}.json"

#: The portable job, the same one the standalone example submits to a Spark master: only the
#: operator differs. Small resources, so that several runs share a laptop's cluster.
JOB = SparkJob(
    application=f"file://{APP}",
    args=["{{ params.n }}", OUTPUT, "{{ params.hold_seconds }}"],
    driver_memory="512m",
    executor_memory="512m",
    conf={"spark.cores.max": "1"},
)


def output_path(run_id: str) -> Path:
    """Where the job of ``run_id`` wrote its answer (the rendered ``OUTPUT``)."""
    return Path(OUTPUT_DIR) / f"livy-{run_id.replace(':', '-').replace('+', '-')}.json"


with DAG(
    dag_id="livy_sum_of_squares",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"n": 1_000_000, "hold_seconds": 0},
    tags=["airflow-spark-async", "livy", "example"],
) as dag:
    # Waits in the triggerer, polling Livy every 5 s; deletes the batch if it runs over 20 minutes.
    compute = LivyBatchOperator(task_id="sum_of_squares", job=JOB, poll_interval=5,
                                job_timeout=timedelta(minutes=20), deferrable=True, retries=1)

    @task
    def check_result(run_id: str | None = None, params: dict | None = None) -> int:
        """Fail the run unless Spark's answer is the one a plain Python loop finds."""
        assert run_id is not None and params is not None
        spark_says = json.loads(output_path(run_id).read_text())["sum_of_squares"]
        python_says = sum(k * k for k in range(1, int(params["n"]) + 1))
        if spark_says != python_says:
            raise ValueError(f"Spark computed {spark_says}, Python {python_says}")
        print(f"RESULT sum of squares 1..{params['n']} = {spark_says} (checked)")
        return int(spark_says)

    compute >> check_result()
