"""Moved into :mod:`airflow_spark_async.core.runtime`; this path stays so that existing imports keep working."""

from airflow_spark_async.core.runtime import BACKEND_TTL, Watcher, forget_backend, get_backend, get_watcher

__all__ = ["BACKEND_TTL", "Watcher", "forget_backend", "get_backend", "get_watcher"]
