"""A deferrable sensor on an existing standalone driver (``driver-…`` submission id)."""

from __future__ import annotations

from airflow_spark_async.core.sensor import SparkJobSensor
from airflow_spark_async.standalone.triggers import SparkStandaloneTrigger

__all__ = ["SparkStandaloneDriverSensor"]


class SparkStandaloneDriverSensor(SparkJobSensor):
    """Wait until a driver submitted to a standalone master ends.

    ``target_states`` default to ``FINISHED``; any other terminal state (``FAILED``, ``KILLED``,
    ``ERROR``) fails the sensor. The sensor never kills the driver it watches.
    """

    trigger_class = SparkStandaloneTrigger
    default_conn_id = "spark_standalone_default"
