"""Moved into :mod:`airflow_spark_async.core.runtime`; this path stays so that existing imports keep working."""

from airflow_spark_async.core.runtime import call_backend, run_sync, set_runner

__all__ = ["call_backend", "run_sync", "set_runner"]
