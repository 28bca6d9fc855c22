"""The Livy trigger. Its class path, ``airflow_spark_async.livy.triggers.LivyBatchTrigger``, is stored
in Airflow's database: never move it without leaving an alias behind."""

from __future__ import annotations

from airflow_spark_async.core.trigger import SparkJobTrigger
from airflow_spark_async.livy.backend import LivyBackend

__all__ = ["LivyBatchTrigger"]


class LivyBatchTrigger(SparkJobTrigger):
    """Watch one Livy batch until it ends. Unlike the official ``LivyTrigger``, its backend options
    carry the endpoint prefix and auth type, so the triggerer talks to Livy as the worker did."""

    backend_class = LivyBackend
