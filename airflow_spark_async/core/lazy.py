"""Moved into :mod:`airflow_spark_async.core.backend`; this path stays so that existing imports keep working."""

from airflow_spark_async.core.backend import lazy_exports

__all__ = ["lazy_exports"]
