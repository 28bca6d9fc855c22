"""EMR Serverless job runs: start, watch, cancel, find again, read their logs.

Job ids are ``APPLICATION:JOBRUN`` (see :mod:`.ids`). ``StartJobRun`` takes a client token,
but a token shared by every try cannot make a retry *resubmit* after a failed run (the same
token would hand back the failed run), so the operators send one token per try
(``<key>.<try>``): a resend within one try gets the same run, a retry gets a new one. Two tries
running at once (a zombie and its successor) therefore send different tokens, which AWS does
not deduplicate — so ``idempotent_submit`` is false and the core checks for a racing duplicate.
A retry finds an earlier try's run by the key in the job-run names: ``ListJobRuns`` filtered to
unfinished states shows names, not tokens or tags.

Polling is coalesced per application: one ``ListJobRuns`` of the unfinished runs answers for
every watched run still going (50 a page; the page count is bounded by the number watched, so
a busy application cannot make a cycle expensive); runs that ended are asked for with
``GetJobRun``, which carries ``stateDetails``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow_spark_async.core.backend import JobState, JobStatus, status_if_carrying
from airflow_spark_async.core.errors import JobNotFoundError, RequestRejected, ServerError
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.emr.aws import AwsBackend, AwsOptions
from airflow_spark_async.emr.ids import JobRunRef, in_family, parse_tag, tag_name
from airflow_spark_async.emr.spark import spark_submit_driver

__all__ = ["JOB_RUN_STATES", "EmrServerlessBackend", "JobRunInfo", "JobRunRequest", "serverless_token"]

JOB_RUN_STATES: dict[str, JobState] = {
    "SUBMITTED": JobState.PENDING,
    "PENDING": JobState.PENDING,
    "SCHEDULED": JobState.PENDING,
    "QUEUED": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "CANCELLING": JobState.CANCELLING,  # CancelJobRun or the run's timeout: ending, never reattached to
    "SUCCESS": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
}
log = logging.getLogger(__name__)

ACTIVE_JOB_RUN_STATES = ("SUBMITTED", "PENDING", "SCHEDULED", "QUEUED", "RUNNING", "CANCELLING")
LIST_PAGE = 50


def serverless_token(key: str, try_number: int | None) -> str:
    """The ``StartJobRun`` client token of one try: ``<key>.<try>`` (1 to 64 characters of ``[A-Za-z0-9._-]``).

    Per try, not per key: AWS hands a reused token the run it already made, whatever became of it,
    so a token shared by every try would give a retry the failed run of the try before.
    """
    return f"{key}.{int(try_number or 1)}"[:64]


@dataclasses.dataclass(frozen=True)
class JobRunInfo:
    """A job run from ``GetJobRun`` (``jobRunId``) or a ``ListJobRuns`` item (``id``)."""

    application_id: str
    id: str
    name: str
    state: str
    details: str | None = None
    log_uri: str | None = None
    created_at: str = ""

    @classmethod
    def parse(cls, data: Any) -> JobRunInfo:
        run_id = data.get("jobRunId") or data.get("id") if isinstance(data, Mapping) else None
        if not run_id or not data.get("applicationId") or not data.get("state"):
            raise ServerError(f"EMR Serverless answered a job run without its ids or state: {str(data)[:200]!r}")
        monitoring = (data.get("configurationOverrides") or {}).get("monitoringConfiguration") or {}
        return cls(
            application_id=str(data["applicationId"]),
            id=str(run_id),
            name=str(data.get("name") or ""),
            state=str(data["state"]),
            details=data.get("stateDetails") or None,
            log_uri=(monitoring.get("s3MonitoringConfiguration") or {}).get("logUri") or None,
            created_at=str(data.get("createdAt") or ""),
        )

    @property
    def ref(self) -> JobRunRef:
        return JobRunRef(self.application_id, self.id)


@dataclasses.dataclass(frozen=True)
class ServerlessOptions(AwsOptions):
    """``application_id`` and ``execution_role_arn``: for a bare :class:`SparkJob`, and where a retry
    looks for an earlier try's run (the operator sets them); ``cancel_on_kill`` is read by the trigger."""

    application_id: str | None = None
    execution_role_arn: str | None = None
    cancel_on_kill: bool = True


@dataclasses.dataclass(frozen=True)
class JobRunRequest:
    """What :class:`~airflow_spark_async.emr.operators.EmrServerlessStartJobOperator` submits.

    :param extra: further ``StartJobRun`` arguments (the official operator's ``config``:
        ``tags``, ``executionTimeoutMinutes``, ``retryPolicy`` …).
    """

    application_id: str | None
    execution_role_arn: str | None
    job_driver: Mapping[str, Any]
    configuration_overrides: Mapping[str, Any] | None = None
    name: str | None = None
    client_token: str | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class EmrServerlessBackend(AwsBackend[JobRunRequest]):
    """Job runs of EMR Serverless applications; see the module docstring.

    Backend options: ``region_name``, ``verify``, ``botocore_config`` (AWS),
    ``application_id`` and ``execution_role_arn`` (for a bare :class:`SparkJob`, and where a
    retry looks for an earlier try's run — the operator sets them), ``cancel_on_kill`` (read
    by the trigger).
    """

    name: ClassVar[str] = "emr_serverless"
    service: ClassVar[str] = "emr-serverless"
    supports_find_by_key: ClassVar[bool] = True
    Options: ClassVar[type[AwsOptions]] = ServerlessOptions

    async def submit(self, request: JobRunRequest | SparkJob, *, key: str, attempt: int = 1) -> JobStatus:
        if isinstance(request, SparkJob):  # the portable job, as the conformance suite submits it
            request = JobRunRequest(None, None, spark_submit_driver(request), name=request.name)
        application_id = request.application_id or self.required("application_id")
        await self._start_application(application_id)
        params: dict[str, Any] = {
            **request.extra,
            "applicationId": application_id,
            # one token per try: a resend within the try gets the same run, a retry a new one
            "clientToken": request.client_token or serverless_token(key, attempt),
            "executionRoleArn": request.execution_role_arn or self.required("execution_role_arn"),
            "jobDriver": dict(request.job_driver),
            "name": tag_name(request.name or "spark-job", key),
        }
        if request.configuration_overrides:
            params["configurationOverrides"] = dict(request.configuration_overrides)
        answer = await self.call("start_job_run", **params)
        if not answer.get("jobRunId"):
            raise ServerError(f"EMR Serverless StartJobRun answered without a jobRunId: {answer!r}")
        ref = JobRunRef(application_id, str(answer["jobRunId"]))
        monitoring = (request.configuration_overrides or {}).get("monitoringConfiguration") or {}
        log_uri = (monitoring.get("s3MonitoringConfiguration") or {}).get("logUri")
        return JobStatus(str(ref), JobState.PENDING, "SUBMITTED", links=self._links(ref, log_uri))

    async def _start_application(self, application_id: str) -> None:
        """Start a stopped application whose auto-start is off (with auto-start, the run starts it)."""
        application = (await self.call("get_application", applicationId=application_id)).get("application") or {}
        state = application.get("state")
        if state in ("TERMINATED", "STOPPING"):
            raise RequestRejected(f"EMR Serverless application {application_id} is {state}; it cannot run jobs")
        auto_start = (application.get("autoStartConfiguration") or {}).get("enabled", True)
        if state in ("CREATED", "STOPPED") and not auto_start:
            await self.call("start_application", applicationId=application_id)

    async def find_jobs(self, family: str) -> Sequence[JobStatus]:
        """The unfinished runs of the option's application whose names carry a key of ``family``,
        newest first, with their keys.

        Only unfinished runs: ``ListJobRuns`` cannot filter by name, so listing finished runs would
        page through the application's whole history on every submit, and the core neither
        reattaches to nor cancels a run that ended.
        """
        application_id = self.required("application_id")
        try:
            mine = [
                info
                async for item in self.paged("list_job_runs", "jobRuns", "nextToken",
                                             applicationId=application_id, states=list(ACTIVE_JOB_RUN_STATES))
                if in_family((tag := parse_tag((info := JobRunInfo.parse(item)).name)) and tag.key, family)
            ]
        except JobNotFoundError:  # no such application: nothing to reattach to; submitting says why
            return []
        return [self._status(info) for info in sorted(mine, key=lambda info: info.created_at, reverse=True)]

    async def _job_run(self, ref: JobRunRef) -> JobRunInfo:
        answer = await self.call("get_job_run", applicationId=ref.application_id, jobRunId=ref.job_run_id)
        return JobRunInfo.parse(answer.get("jobRun"))

    async def status(self, job_id: str) -> JobStatus:
        return self._status(await self._job_run(JobRunRef.parse(job_id)))

    def _status(self, info: JobRunInfo) -> JobStatus:
        state = JOB_RUN_STATES.get(info.state, JobState.PENDING)
        tag = parse_tag(info.name)
        return JobStatus(str(info.ref), state, info.state, message=info.details,
                         links=self._links(info.ref, info.log_uri), key=tag.key if tag else None)

    async def status_many(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        by_application: dict[str, set[str]] = {}
        for job_id in job_ids:
            ref = JobRunRef.parse(job_id)
            by_application.setdefault(ref.application_id, set()).add(job_id)
        found: dict[str, JobStatus] = {}
        for application_id, wanted in by_application.items():
            pages = math.ceil(len(wanted) / LIST_PAGE) + 1
            async for item in self.paged("list_job_runs", "jobRuns", "nextToken", max_pages=pages,
                                         applicationId=application_id, states=list(ACTIVE_JOB_RUN_STATES),
                                         maxResults=LIST_PAGE):
                info = JobRunInfo.parse(item)
                if str(info.ref) in wanted:
                    found[str(info.ref)] = self._status(info)
        return found

    async def cancel(self, job_id: str, *, key: str | None = None) -> None:
        """``CancelJobRun``; with ``key``, a run whose name carries another key is left alone (logged)."""
        ref = JobRunRef.parse(job_id)
        if key is not None and await status_if_carrying(self, job_id, key, f"job run {job_id}") is None:
            return
        await self.cancel_with_retries("cancel_job_run", f"job run {job_id}", applicationId=ref.application_id,
                                       jobRunId=ref.job_run_id)

    async def logs(self, job_id: str, *, tail_lines: int) -> str | None:
        """Tails of the Spark driver's ``stdout``/``stderr`` from the run's S3 log location."""
        ref = JobRunRef.parse(job_id)
        info = await self._job_run(ref)
        if not info.log_uri:
            return None
        folder = f"{info.log_uri.rstrip('/')}/applications/{ref.application_id}/jobs/{ref.job_run_id}/SPARK_DRIVER"
        return await self.log_tails(folder, "driver", tail_lines)

    async def dashboard_url(self, job_id: str) -> str | None:
        """The run's Spark UI: a one-time URL, valid for an hour, so it is asked for on each click."""
        ref = JobRunRef.parse(job_id)
        answer = await self.call("get_dashboard_for_job_run", applicationId=ref.application_id,
                                 jobRunId=ref.job_run_id)
        url = answer.get("url")
        return str(url) if url else None

    def links(self, job_id: str) -> dict[str, str]:
        return self._links(JobRunRef.parse(job_id))

    def _links(self, ref: JobRunRef, log_uri: str | None = None) -> dict[str, str]:
        if not log_uri or not log_uri.startswith("s3://"):
            return {}
        path = f"applications/{ref.application_id}/jobs/{ref.job_run_id}/"
        return {"emr_serverless_logs": self.s3_console_url(log_uri, path)}
