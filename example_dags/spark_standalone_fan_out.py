"""Many Spark jobs, few worker slots: deferral lets them all run at once.

Ten drivers of ``sleep_seconds`` each are submitted by a mapped task. With
``deferrable=True`` each task holds a worker slot only for the second it takes to submit,
so the run ends in about one job's time even with two worker slots. The twin DAG
``spark_standalone_fan_out_blocking`` (``deferrable=False``) holds a slot per running job
and needs about five jobs' time on two slots.

The cluster needs a core per concurrent driver: ``./dev cluster start`` gives the local
worker enough.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG

from airflow_spark_async.standalone import SparkStandaloneSubmitOperator

APP = Path(__file__).parent / "spark_apps" / "sleep_then_exit.py"

for dag_id, deferrable in (("spark_standalone_fan_out", True), ("spark_standalone_fan_out_blocking", False)):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        params={"sleep_seconds": 30},
        tags=["airflow-spark-async", "standalone", "example"],
    ):
        SparkStandaloneSubmitOperator.partial(task_id="sleepy_job", poll_interval=5, deferrable=deferrable).expand(
            job=[
                {"application": f"file://{APP}", "args": ["{{ params.sleep_seconds }}"], "driver_memory": "512m"}
                for _ in range(10)
            ]
        )
