"""A Databricks notebook run that frees its worker slot, and whose exit value reaches XCom.

``DatabricksSubmitRunOperator`` takes the official provider's arguments, so this is the
official example with one import changed. While the notebook runs, the task waits in the
triggerer; ``dbutils.notebook.exit(value)`` in the notebook becomes the XCom
``notebook_output`` that ``report`` reads. The run page is the task's "See Databricks Job Run"
link, and a retry reattaches to a run that still runs instead of starting a second one.

Connection ``databricks_default``: see docs/databricks.md (PAT, OAuth M2M or Azure SP).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from airflow_spark_async.databricks import DatabricksSubmitRunOperator

NEW_CLUSTER = {
    "spark_version": "15.4.x-scala2.12",
    "node_type_id": "i3.xlarge",
    "num_workers": 2,
}

with DAG(
    dag_id="databricks_notebook",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["airflow-spark-async", "databricks", "example"],
) as dag:
    notebook = DatabricksSubmitRunOperator(
        task_id="daily_summary",
        new_cluster=NEW_CLUSTER,
        notebook_task={
            "notebook_path": "/Shared/airflow-spark-async/daily_summary",
            "base_parameters": {"run_date": "{{ dag_run.run_after | ds }}"},
        },
        polling_period_seconds=10,
        deferrable=True,
        job_timeout=timedelta(hours=1),
        retries=1,
    )

    @task
    def report(summary: str | None) -> str:
        """Whatever the notebook passed to dbutils.notebook.exit()."""
        print(f"The notebook said: {summary}")
        return summary or ""

    report(notebook.output["notebook_output"])
