"""The run page of a Databricks run, as an extra link.

Its XCom key is the official provider's ``run_page_url``, so DAGs that pull the run page URL
from XCom (``ti.xcom_pull(task_ids=..., key="run_page_url")``) keep working after the switch.
"""

from __future__ import annotations

from airflow_spark_async.core.operator import JobLink

__all__ = ["XCOM_RUN_PAGE_URL_KEY", "DatabricksJobRunLink"]

XCOM_RUN_PAGE_URL_KEY = "run_page_url"


class DatabricksJobRunLink(JobLink):
    name = "See Databricks Job Run"
    link_key = "run_page_url"

    @property
    def xcom_key(self) -> str:
        return XCOM_RUN_PAGE_URL_KEY
