"""Extra links of the EMR operators and sensors.

The console links are computed when the job is submitted (no API call when the page renders).
The Serverless dashboard is different: ``GetDashboardForJobRun`` returns a one-time URL that
expires within the hour, so the task stores which run it is and the link asks AWS on each
click, as the official provider does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_spark_async.core.errors import SparkAsyncError
from airflow_spark_async.core.operator import JobLink
from airflow_spark_async.core.runtime import get_backend, run_sync

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey

__all__ = ["EmrClusterLink", "EmrLogsLink", "EmrServerlessDashboardLink", "EmrServerlessLogsLink"]

log = logging.getLogger(__name__)


class EmrClusterLink(JobLink):
    name = "EMR Cluster"
    link_key = "emr_cluster"


class EmrLogsLink(JobLink):
    name = "EMR Cluster Logs"
    link_key = "emr_logs"


class EmrServerlessLogsLink(JobLink):
    name = "EMR Serverless Logs"
    link_key = "emr_serverless_logs"


class EmrServerlessDashboardLink(JobLink):
    """The job run's Spark UI, asked for when the link is opened (the URL is single-use)."""

    name = "EMR Serverless Dashboard"
    link_key = "emr_serverless_dashboard"
    #: what the task stores under the link's XCom key (``reference``)
    fields: ClassVar[tuple[str, ...]] = ("conn_id", "job_id", "backend_options")

    @staticmethod
    def reference(conn_id: str, job_id: str, backend_options: dict[str, Any]) -> dict[str, Any]:
        return {"conn_id": conn_id, "job_id": job_id, "backend_options": backend_options}

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        ref = self.stored(operator, ti_key)
        if not isinstance(ref, dict) or not all(ref.get(f) is not None for f in self.fields):
            return ""
        return self.resolve(ref)

    @staticmethod
    def resolve(ref: dict[str, Any]) -> str:
        from airflow_spark_async.emr.serverless import EmrServerlessBackend

        async def ask() -> str | None:
            backend = await get_backend(EmrServerlessBackend, ref["conn_id"], ref["backend_options"])
            assert isinstance(backend, EmrServerlessBackend)
            return await backend.dashboard_url(ref["job_id"])

        try:
            return run_sync(ask) or ""
        except SparkAsyncError as exc:  # a link must never break the page
            log.warning("Could not get the EMR Serverless dashboard of %s: %s", ref["job_id"], exc)
            return ""
