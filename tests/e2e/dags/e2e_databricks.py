"""E2E-only DAGs of the Databricks backend, run against the Jobs API test server.

* ``e2e_databricks_fan_out`` — one more run than the stack's worker slots, each ``seconds`` long;
* ``e2e_databricks_long`` — one run of ``seconds``, for the triggerer-kill and mark-failed scenarios.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_spark_async.databricks import DatabricksSubmitRunOperator

APP = "dbfs:/apps/sleep_then_exit.py"  # the test server runs it for [seconds, exit code]
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}
#: runs of the fan-out: one more than the shared stack's worker slots (tests/e2e/backends.py SLOTS)
FAN_OUT = 2

with DAG("e2e_databricks_fan_out", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         params={"seconds": 20}):
    for i in range(FAN_OUT):
        DatabricksSubmitRunOperator(
            task_id=f"run_{i}", new_cluster=CLUSTER, polling_period_seconds=5, deferrable=True,
            spark_python_task={"python_file": APP, "parameters": ["{{ params.seconds }}", "0"]},
        )

with DAG("e2e_databricks_long", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         params={"seconds": 30}):
    DatabricksSubmitRunOperator(
        task_id="long", new_cluster=CLUSTER, polling_period_seconds=5, deferrable=True,
        spark_python_task={"python_file": APP, "parameters": ["{{ params.seconds }}", "0"]},
    )
