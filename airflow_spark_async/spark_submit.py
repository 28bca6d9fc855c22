"""``from airflow_spark_async.spark_submit import SparkSubmitOperator``: the deferrable drop-in for the
official ``airflow.providers.apache.spark.operators.spark_submit.SparkSubmitOperator``; it lives with
the standalone backend it submits through (:mod:`airflow_spark_async.standalone.spark_submit`)."""

from airflow_spark_async.standalone.spark_submit import SparkSubmitOperator

__all__ = ["SparkSubmitOperator"]
