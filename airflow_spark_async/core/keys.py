"""Moved into :mod:`airflow_spark_async.core.backend`; this path stays so that existing imports keep working."""

from airflow_spark_async.core.backend import KEY_PREFIX as PREFIX
from airflow_spark_async.core.backend import (
    JobKey,
    deployment_salt,
    find_key,
    job_key,
    job_key_from_context,
    key_family,
    parse_key,
)

__all__ = [
    "PREFIX",
    "JobKey",
    "deployment_salt",
    "find_key",
    "job_key",
    "job_key_from_context",
    "key_family",
    "parse_key",
]
