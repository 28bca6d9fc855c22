"""Moved into :mod:`airflow_spark_async.core.backend`; this path stays so that existing imports keep working."""

from airflow_spark_async.core.backend import TERMINAL_STATES, JobState

__all__ = ["TERMINAL_STATES", "JobState"]
