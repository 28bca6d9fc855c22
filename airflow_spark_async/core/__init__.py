"""Backend-neutral deferral machinery, written once: states, spec, backend protocol, poll loop,
operator and sensor bases. A backend is one folder that plugs into these."""

from airflow_spark_async.core.backend import TERMINAL_STATES, JobState
from airflow_spark_async.core.spec import SparkJob

__all__ = ["TERMINAL_STATES", "JobState", "SparkJob"]
