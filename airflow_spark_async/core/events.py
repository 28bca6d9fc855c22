"""Moved into :mod:`airflow_spark_async.core.trigger`; this path stays so that existing imports keep working."""

from airflow_spark_async.core.trigger import EVENT_VERSION, EventStatus, JobEvent, Reason

__all__ = ["EVENT_VERSION", "EventStatus", "JobEvent", "Reason"]
