"""Trigger for Databricks runs. Its class path is stored in Airflow's database: never move it
without leaving an alias behind."""

from __future__ import annotations

from airflow_spark_async.core.trigger import SparkJobTrigger
from airflow_spark_async.databricks.backend import DatabricksBackend

__all__ = ["DatabricksRunTrigger"]


class DatabricksRunTrigger(SparkJobTrigger):
    """Watch one Databricks run until it ends (see ``SparkJobTrigger``); ``job_id`` is the run id."""

    backend_class = DatabricksBackend
