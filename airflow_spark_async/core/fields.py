"""Moved into :mod:`airflow_spark_async.core.spec`; this path stays so that existing imports keep working."""

from airflow_spark_async.core.spec import Alias, from_known_fields

__all__ = ["Alias", "from_known_fields"]
