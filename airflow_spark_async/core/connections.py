"""Moved into :mod:`airflow_spark_async.core.runtime`; this path stays so that existing imports keep working."""

from airflow_spark_async.core.runtime import aload_connection, load_connection

__all__ = ["aload_connection", "load_connection"]
