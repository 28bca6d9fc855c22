"""Trigger for Spark standalone drivers. Its class path is stored in Airflow's database:
never move it without leaving an alias behind."""

from __future__ import annotations

from airflow_spark_async.core.trigger import SparkJobTrigger
from airflow_spark_async.standalone.backend import StandaloneBackend

__all__ = ["SparkStandaloneTrigger"]


class SparkStandaloneTrigger(SparkJobTrigger):
    """Watch one driver of a Spark standalone master until it ends (see ``SparkJobTrigger``)."""

    backend_class = StandaloneBackend
