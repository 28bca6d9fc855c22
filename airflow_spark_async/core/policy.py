"""Moved into :mod:`airflow_spark_async.core.retry`; this path stays so that existing imports keep working."""

from airflow_spark_async.core.retry import PollPolicy

__all__ = ["PollPolicy"]
