"""Extra links of the standalone operators: the master's web UI and the driver's stderr page."""

from __future__ import annotations

from airflow_spark_async.core.operator import JobLink

__all__ = ["SparkDriverLogLink", "SparkMasterUILink"]


class SparkMasterUILink(JobLink):
    name = "Spark Master UI"
    link_key = "master_ui"


class SparkDriverLogLink(JobLink):
    name = "Spark driver log"
    link_key = "driver_log"
