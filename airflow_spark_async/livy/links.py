"""Extra links of the Livy operator: Livy's page of the batch, and the Spark UI and driver log that
Livy reports in ``appInfo`` once the application runs (YARN and Kubernetes fill them in)."""

from __future__ import annotations

from airflow_spark_async.core.operator import JobLink

__all__ = ["LivyBatchLink", "LivyDriverLogLink", "LivySparkUILink"]


class LivyBatchLink(JobLink):
    name, link_key = "Livy batch", "livy_batch"


class LivySparkUILink(JobLink):
    name, link_key = "Spark UI (Livy)", "spark_ui"


class LivyDriverLogLink(JobLink):
    name, link_key = "Spark driver log (Livy)", "driver_log"
