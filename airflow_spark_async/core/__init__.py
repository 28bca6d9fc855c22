"""Backend-neutral deferral machinery, written once: states, spec, backend protocol, poll loop,
operator and sensor bases. A backend is one folder that plugs into these."""

from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.core.states import TERMINAL_STATES, JobState

__all__ = ["TERMINAL_STATES", "JobState", "SparkJob"]
