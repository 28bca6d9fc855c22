"""Databricks backend: runs of the Jobs API 2.2 (or 2.1) over pooled aiohttp sessions.

* **Auth** comes from databricks-sdk (:class:`~airflow_spark_async.databricks.auth.SdkAuth`),
  computed in a thread; core's request path renews it once after a 401, then fails as ``AuthError``.
* **Submitting** sends the request of a :class:`DatabricksRun` with its idempotency token and
  retries transient failures (``retry_limit`` times, ``retry_delay`` doubling, ``Retry-After``
  honoured, behind the workspace's throttle gate, so a throttled workspace slows submits and
  cancels too) — safe only *because* of the token: a resend after a lost answer gets the same run.
* **Reattach** across tries is the core's ledger (the API cannot look a run up by token without
  submitting, and a run object carries neither the token nor our key, so ``JobStatus.key`` stays
  unset); the token of an earlier try that may have submitted unrecorded is sent first.
* **Tokens are per try** (``<key>`` for the first, ``<key>.<try>`` after): Databricks hands a
  reused token the run it already made, whatever became of it, so a shared token would give a
  retry the earlier try's failed run (#64828). Hence ``idempotent_submit`` is false: two tries
  at once (a zombie and its successor) send different tokens and get two runs, which the core's
  after-submit race check catches. The key's family is per DAG run *instance*, so a DAG run
  deleted and re-created with the same run id sends new tokens too.
* **Identity**: :meth:`DatabricksBackend.identity` is the workspace plus a digest of the
  credentials, so triggers of two principals on one workspace never share a watcher (and a
  token); a 401 after one credential refresh raises ``AuthError`` and the core re-reads the
  connection — which is how a PAT rotated in the connection is picked up.
* **Coalesced polling**: one ``runs/list?active_only=true`` answers for every watched run still
  active; only runs that left the active list are asked for with ``runs/get``.
* **Failure explains itself**: the run's ``state_message`` and termination code, the per-task
  states, and for each failed task ``runs/get-output``'s ``error`` and trimmed ``error_trace``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_spark_async.core.backend import Backend, JobState, JobStatus, StatusMany
from airflow_spark_async.core.errors import (
    ConfigurationError,
    JobNotFoundError,
    RequestRejected,
    ServerError,
    SparkAsyncError,
)
from airflow_spark_async.core.http import MAX_RETRY_AFTER
from airflow_spark_async.core.paging import Page, fetch_each, pages
from airflow_spark_async.core.rest import RestApi
from airflow_spark_async.core.retry import Backoff
from airflow_spark_async.core.spec import BackendOptions, option
from airflow_spark_async.databricks.auth import DatabricksSettings, SdkAuth
from airflow_spark_async.databricks.compat.connection import settings_from_connection
from airflow_spark_async.databricks.request import RUN_NOW, DatabricksRun
from airflow_spark_async.databricks.runs import Run, TaskOutput, TaskRun, merge_pages, task_log

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["DatabricksBackend", "DatabricksOptions"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DatabricksOptions(BackendOptions):
    """The backend options (JSON-safe, carried in trigger kwargs), checked at DAG parse time.

    :param retry_limit: retries of a submit, cancel or output request after a transient failure.
    :param retry_delay: seconds before the first retry, doubled for each further one (not
        jittered: the official provider's meaning of ``databricks_retry_delay``).
    :param api_version: the Jobs API version, ``2.2`` or ``2.1``.
    """

    what: ClassVar[str] = "Databricks backend options"
    retry_limit: int = option(3, ge=1)
    retry_delay: float = option(1.0, gt=0)
    api_version: str = option("2.2", choices=("2.1", "2.2"))


#: runs/list page size: the API's maximum
LIST_PAGE_SIZE = 25
#: tasks whose output is fetched for the task log at the end of a run (failed ones first)
LOG_TASKS = 10
OUTPUT_CONCURRENCY = 8


class DatabricksBackend(Backend[DatabricksRun]):
    """Runs on one Databricks workspace."""

    name: ClassVar[str] = "databricks"
    supports_find_by_key: ClassVar[bool] = False
    #: the API deduplicates one token, but tokens are per try (see the module docstring)
    idempotent_submit: ClassVar[bool] = False

    def __init__(self, settings: DatabricksSettings, options: Mapping[str, Any] | None = None) -> None:
        from airflow_spark_async import __version__

        opts = DatabricksOptions.from_options(options)
        self.settings = settings
        self.backoff = Backoff(base=opts.retry_delay, cap=MAX_RETRY_AFTER, jitter=False)
        self.api = RestApi(f"{settings.host}/api/{opts.api_version}/jobs", identity=self.watch_key,
                           credentials=SdkAuth.of(settings), attempts=opts.retry_limit + 1, policy=self.backoff,
                           headers={"User-Agent": f"airflow-spark-async/{__version__}"}, what="Databricks")

    @classmethod
    async def from_connection(cls, conn: Connection, options: Mapping[str, Any]) -> DatabricksBackend:
        return cls(settings_from_connection(conn), options)

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        DatabricksOptions.from_options(options)

    @property
    def watch_key(self) -> str:
        """The workspace and a salted digest of the credentials (:attr:`DatabricksSettings.identity`),
        never a secret — also the :meth:`identity`: a watcher polls with its backend's credentials,
        and another principal may not see (or may not be allowed to read) the same runs."""
        return f"{self.settings.host}|{self.settings.identity}"

    def retry_delay_for(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before retry ``attempt`` of a submit, cancel or output request: ``retry_delay``
        doubling, at least a server's ``Retry-After`` — validated and capped like every one."""
        return self.backoff.delay(attempt, retry_after)

    # -- transport -------------------------------------------------------------------------

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call (``retry=True`` for submits, cancels and output reads: see :class:`RestApi`)."""
        try:
            return await self.api.call(method, path, **kwargs)
        except RequestRejected as exc:
            # The API answers 400 INVALID_PARAMETER_VALUE "Run <id> does not exist" for an unknown
            # run (databricks-sdk remaps it the same way).
            if "does not exist" in str(exc):
                raise JobNotFoundError(str(exc), status=exc.status) from exc
            raise

    def list_pages(self, path: str, field: str, params: Mapping[str, Any], *, retry: bool = False,
                   max_pages: int | None = None) -> AsyncIterator[Page[Mapping[str, Any], str]]:
        """The ``field`` items of each page of a token-paged list (``runs/list``, ``jobs/list``)."""

        async def fetch(token: str | None) -> Page[Mapping[str, Any], str]:
            answer = await self.call("GET", path, params={**params, **({"page_token": token} if token else {})},
                                     retry=retry)
            if not isinstance(answer, Mapping):
                raise ServerError(f"{path} answered {str(answer)[:200]!r}")
            items = [item for item in answer.get(field) or () if isinstance(item, Mapping)]
            return Page(items, (answer.get("has_more") or None) and answer.get("next_page_token"))

        return pages(fetch, max_pages=max_pages)

    # -- reading runs -----------------------------------------------------------------------

    async def run(self, run_id: str) -> Run:
        """``runs/get``, its pages of tasks (API 2.2 has at most 100 per page) merged."""
        if not str(run_id).isdigit():
            raise JobNotFoundError(f"{run_id!r} is not a Databricks run id (run ids are integers)")

        async def fetch(token: str | None) -> Page[Any, str]:
            page = await self.call("GET", "runs/get", params={"run_id": run_id, **({"page_token": token} if token
                                                                                    else {})})
            return Page([page], page.get("next_page_token") if isinstance(page, Mapping) else None)

        first, *more = [page.items[0] async for page in pages(fetch)]
        return Run.parse(merge_pages(first, more) if isinstance(first, Mapping) else first)

    async def outputs(self, tasks: Sequence[TaskRun]) -> list[tuple[TaskRun, TaskOutput]]:
        """``runs/get-output`` of several task runs; one that fails to load must not hide the others."""

        async def fetch(task: TaskRun) -> Any:
            return await self.call("GET", "runs/get-output", params={"run_id": task.run_id}, retry=True)

        results = []
        for task, out in await fetch_each(tasks, fetch, limit=OUTPUT_CONCURRENCY):
            if isinstance(out, BaseException):
                log.warning("Could not read the output of run %s: %s", task.run_id, out)
            results.append((task, TaskOutput.parse(None if isinstance(out, BaseException) else out)))
        return results

    # -- the Backend protocol ------------------------------------------------------------------

    async def submit(self, request: DatabricksRun, *, key: str, attempt: int) -> JobStatus:
        """Send the run (its token is this try's: the operator derived it from ``key`` and ``attempt``,
        and recorded it before sending), or reattach to the earlier try's run of ``earlier_token``."""
        if not isinstance(request, DatabricksRun):
            raise ConfigurationError(
                "the Databricks backend submits DatabricksRun requests; run a SparkJob with "
                "DatabricksSubmitRunOperator(job=..., new_cluster=...)"
            )
        body = {"idempotency_token": key, **request.body}
        if request.endpoint == RUN_NOW and "job_name" in body:
            body["job_id"] = await self.find_job_id(str(body.pop("job_name")))
        if request.endpoint == RUN_NOW and request.cancel_previous_runs:
            log.info("Cancelling the active runs of job %s first (cancel_previous_runs)", body["job_id"])
            await self.call("POST", "runs/cancel-all", json_body={"job_id": body["job_id"]}, retry=True)
        tokens = list(dict.fromkeys(t for t in (request.earlier_token, body["idempotency_token"]) if t))
        for token in tokens:
            answer = await self.call("POST", request.endpoint, json_body={**body, "idempotency_token": token},
                                     retry=True)
            if not isinstance(answer, Mapping) or answer.get("run_id") is None:
                raise ServerError(f"{request.endpoint} answered without a run_id: {str(answer)[:200]!r}")
            status = (await self.run(str(answer["run_id"]))).status()
            if not status.is_terminal or token == tokens[-1]:
                return status
            log.info("Run %s of an earlier try already ended %s; starting a new run", status.job_id,
                     status.backend_state)
        raise AssertionError("unreachable")  # pragma: no cover

    async def status(self, job_id: str) -> JobStatus:
        run = await self.run(job_id)
        status = run.status()
        if status.is_terminal and (status.state is not JobState.SUCCEEDED or run.failed_tasks()):
            status = run.explained(await self.outputs(run.failed_tasks()))
        return status

    async def status_many(self, job_ids: Sequence[str]) -> StatusMany:
        """Every watched run still on the workspace's active list, from ``runs/list``; an id that
        is no run id, or a listed run that cannot be parsed, gets its own error.

        Runs not found are asked for one by one by the watcher: they finished (and need
        ``runs/get`` for their outcome) or are not among the first pages. Paging stops once every
        run was found, or after ``len(job_ids) // 2 + 1`` pages, so listing never costs more than
        about half the requests per-run polling would.
        """
        found: dict[str, JobStatus | Exception] = {
            j: JobNotFoundError(f"{j!r} is not a Databricks run id (run ids are integers)")
            for j in map(str, job_ids) if not j.isdigit()}
        wanted = {str(j) for j in job_ids} - set(found)
        if not wanted:
            return found
        listing = self.list_pages("runs/list", "runs", {"active_only": True, "limit": LIST_PAGE_SIZE},
                                        max_pages=len(wanted) // 2 + 1)
        async for page in listing:
            for obj in page.items:
                if (run_id := str(obj.get("run_id"))) in wanted:
                    try:
                        found[run_id] = Run.parse(obj).status()
                    except SparkAsyncError as exc:
                        found[run_id] = exc
            if wanted <= found.keys():
                break
        return found

    async def cancel(self, job_id: str, *, key: str | None) -> None:
        """``runs/cancel``; cancelling is asynchronous (TERMINATING, then TERMINATED/CANCELED).
        ``key`` is not compared: Databricks never reuses a run id, and a run does not carry our key."""
        if not str(job_id).isdigit():
            return
        try:
            await self.call("POST", "runs/cancel", json_body={"run_id": int(job_id)}, retry=True)
        except JobNotFoundError:
            log.info("Run %s no longer exists; nothing to cancel", job_id)

    async def logs(self, job_id: str, *, tail_lines: int) -> str | None:
        """Per task: its state, ``error`` and trimmed ``error_trace``, the notebook's exit value and
        the tail of stdout/stderr that ``runs/get-output`` returns for python, jar and wheel tasks."""
        run = await self.run(job_id)
        tasks = sorted(run.latest_tasks(), key=lambda t: t.state.job_state is not JobState.FAILED)  # failed first
        parts = [task_log(run, task, out, tail_lines) for task, out in await self.outputs(tasks[:LOG_TASKS])]
        if len(tasks) > LOG_TASKS:
            parts.append(f"… and {len(tasks) - LOG_TASKS} more tasks: see {run.run_page_url or 'the run page'}")
        return "\n".join(parts) or None

    # -- beyond the protocol ----------------------------------------------------------------

    async def notebook_outputs(self, job_id: str) -> dict[str, str]:
        """``dbutils.notebook.exit`` values of the run's successful notebook tasks, by task key."""
        run = await self.run(job_id)
        done = [t for t in run.latest_tasks() if t.is_notebook and t.state.job_state is JobState.SUCCEEDED]
        results = {}
        for task, out in await self.outputs(done):
            if out.notebook_result is not None:
                results[task.task_key] = out.notebook_result
                if out.notebook_truncated:
                    log.warning("The notebook result of task %s was truncated by Databricks (5 MB limit)",
                                task.task_key)
        return results

    async def probe(self) -> str:
        await self.call("GET", "runs/list", params={"limit": 1})
        return f"Databricks workspace {self.settings.host} answered ({self.settings.auth_type} auth)"

    async def find_job_id(self, name: str) -> int:
        """The id of the one job named ``name`` (``jobs/list?name=`` matches exactly, ignoring case);
        paging stops at a second match — two are already one too many."""
        ids: list[int] = []
        async for page in self.list_pages("list", "jobs", {"name": name, "limit": 100}, retry=True):
            ids += [int(j["job_id"]) for j in page.items if j.get("job_id") is not None]
            if len(ids) > 1:
                raise ConfigurationError(f"There are more than one job with name {name!r} ({sorted(ids)}); use job_id")
        if not ids:
            raise ConfigurationError(f"Job ID for job name {name!r} can not be found")
        return ids[0]
