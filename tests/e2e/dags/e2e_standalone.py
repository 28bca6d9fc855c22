"""E2E-only DAGs of the Spark standalone backend (copied beside the example DAGs by tests/e2e/conftest.py).

* ``e2e_standalone_fan_out`` — the example ``spark_standalone_fan_out`` with as many drivers as the
  slot test needs (one more than the stack's worker slots), not ten: the property proved (jobs run at
  once although the slots are fewer) does not grow with the count, the run time does. Its drivers
  run until the file ``release_file`` exists (or ``sleep_seconds``), so the test ends them once
  it has seen them run side by side.
* ``e2e_standalone_deadline`` — a driver far longer than ``job_timeout``: the trigger's own deadline
  must cancel it while the task is deferred.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG

from airflow_spark_async import SparkJob
from airflow_spark_async.standalone import SparkStandaloneSubmitOperator

APP = Path(__file__).parent / "spark_apps" / "sleep_then_exit.py"
#: drivers of the fan-out: one more than the shared stack's worker slots (tests/e2e/backends.py SLOTS)
FAN_OUT = 2

with DAG("e2e_standalone_fan_out", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         params={"sleep_seconds": 20, "release_file": ""}):
    SparkStandaloneSubmitOperator.partial(task_id="sleepy_job", poll_interval=5, deferrable=True).expand(
        job=[{"application": f"file://{APP}", "args": ["{{ params.sleep_seconds }}", "0", "{{ params.release_file }}"],
              "driver_memory": "512m"}
             for _ in range(FAN_OUT)]
    )

with DAG("e2e_standalone_deadline", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    SparkStandaloneSubmitOperator(task_id="too_slow", job=SparkJob(application=f"file://{APP}", args=["300"]),
                                  poll_interval=5, job_timeout=15, deferrable=True)
