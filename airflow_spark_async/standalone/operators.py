"""The deferrable operator that runs a :class:`SparkJob` on a Spark standalone cluster."""

from __future__ import annotations

from airflow_spark_async.core.operator import SparkJobOperator
from airflow_spark_async.standalone.links import SparkDriverLogLink, SparkMasterUILink
from airflow_spark_async.standalone.triggers import SparkStandaloneTrigger

__all__ = ["SparkStandaloneSubmitOperator"]


class SparkStandaloneSubmitOperator(SparkJobOperator):
    """Submit a Spark application in cluster mode to a standalone master and wait for it.

    The driver runs on a worker of the cluster, so with ``deferrable=True`` the Airflow worker
    is free from the moment the master accepts the submission. Python scripts and jars are
    both supported; the application file must be readable by the Spark workers.

    See :class:`~airflow_spark_async.core.operator.SparkJobOperator` for the arguments;
    ``conn_id`` defaults to ``spark_standalone_default``.
    """

    trigger_class = SparkStandaloneTrigger
    link_classes = (SparkMasterUILink, SparkDriverLogLink)
    operator_extra_links = (SparkMasterUILink(), SparkDriverLogLink())
    default_conn_id = "spark_standalone_default"
