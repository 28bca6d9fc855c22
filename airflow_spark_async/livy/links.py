"""Extra links of the Livy operator: Livy's page of the batch, and the Spark UI and driver log
that Livy reports in ``appInfo`` once the application runs (YARN and Kubernetes fill them in)."""

from __future__ import annotations

from airflow_spark_async.core.links import JobLink

__all__ = ["LivyBatchLink", "LivyDriverLogLink", "LivySparkUILink"]


class LivyBatchLink(JobLink):
    name = "Livy batch"
    link_key = "livy_batch"


class LivySparkUILink(JobLink):
    name = "Spark UI (Livy)"
    link_key = "spark_ui"


class LivyDriverLogLink(JobLink):
    name = "Spark driver log (Livy)"
    link_key = "driver_log"
