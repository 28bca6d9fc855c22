"""Databricks backend: runs of the Jobs API 2.2 (or 2.1) over pooled aiohttp sessions.

* **Auth** comes from databricks-sdk (:class:`~airflow_spark_async.databricks.hook.SdkAuth`),
  computed in a thread; a 401 rebuilds the credentials once, then fails as ``AuthError``.
* **Submitting** sends the request of a :class:`DatabricksRun` with its idempotency token and
  retries transient failures (``retry_limit`` times, ``retry_delay`` doubling, ``Retry-After``
  honoured) — safe only *because* of the token: a resend after a lost answer gets the same run.
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

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_spark_async.core.backend import Backend, JobStatus
from airflow_spark_async.core.errors import (
    AuthError,
    BackendError,
    ConfigurationError,
    JobNotFoundError,
    RequestRejected,
    ServerError,
)
from airflow_spark_async.core.http import MAX_RETRY_AFTER, request_json
from airflow_spark_async.core.options import BackendOptions, option
from airflow_spark_async.core.retry import Backoff, retry_call
from airflow_spark_async.core.runtime import Runtime
from airflow_spark_async.core.states import JobState
from airflow_spark_async.databricks.auth import DatabricksSettings, SdkAuth
from airflow_spark_async.databricks.compat.connection import settings_from_connection
from airflow_spark_async.databricks.request import RUN_NOW, DatabricksRun
from airflow_spark_async.databricks.runs import Run, TaskRun, clean_text, merge_pages, trim

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
#: characters of error traces kept in a failure's diagnostics (the exception shows the last 4000)
TRACE_LIMIT = 3600
#: tasks whose output is fetched for the task log at the end of a run (failed ones first)
LOG_TASKS = 10
_OUTPUT_CONCURRENCY = 8


class DatabricksBackend(Backend[DatabricksRun]):
    """Runs on one Databricks workspace."""

    name: ClassVar[str] = "databricks"
    supports_find_by_key: ClassVar[bool] = False
    #: the API deduplicates one token, but tokens are per try (see the module docstring)
    idempotent_submit: ClassVar[bool] = False

    def __init__(self, settings: DatabricksSettings, options: Mapping[str, Any] | None = None) -> None:
        opts = DatabricksOptions.from_options(options)
        self.settings = settings
        self.auth = SdkAuth.of(settings)
        self.retry_limit = opts.retry_limit
        self.backoff = Backoff(base=opts.retry_delay, cap=MAX_RETRY_AFTER, jitter=False)
        self.api = f"{settings.host}/api/{opts.api_version}/jobs"
        from airflow_spark_async import __version__

        self.user_agent = f"airflow-spark-async/{__version__}"

    @classmethod
    async def from_connection(cls, conn: Connection, options: Mapping[str, Any]) -> DatabricksBackend:
        return cls(settings_from_connection(conn), options)

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        DatabricksOptions.from_options(options)

    @property
    def watch_key(self) -> str:
        """One workspace *and one identity*: a watcher polls with its backend's credentials, and
        another principal may not see (or may not be allowed to read) the same runs."""
        return self.identity()

    def identity(self) -> str:
        """The workspace and a salted sha256 digest of the auth method and credentials — never a
        secret (see :attr:`DatabricksSettings.identity`)."""
        return f"{self.settings.host}|{self.settings.identity}"

    def retry_delay_for(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before retry ``attempt`` of a submit, cancel or output request: ``retry_delay``
        doubling, at least a server's ``Retry-After`` — validated and capped like every one."""
        return self.backoff.delay(attempt, retry_after)

    # -- transport -------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        retry: bool = False,
    ) -> Any:
        """One API call; with ``retry``, transient failures are retried ``retry_limit`` times.

        Polls never retry here: the trigger's loop owns their back-off and error budget, and a
        429 must reach the watcher so every trigger sharing it slows down together.
        """
        send = functools.partial(self._send, method, path, params=params, json_body=json_body)
        if not retry:
            return await send()
        return await retry_call(send, attempts=self.retry_limit + 1, what=f"Databricks {method} {path}",
                                policy=self.backoff)

    async def _send(self, method: str, path: str, *, params: Mapping[str, Any] | None, json_body: Any) -> Any:
        session = Runtime.current().session(self.settings.host)
        query = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (params or {}).items()}
        for refreshed in (False, True):
            auth, generation = await self.auth.headers()
            try:
                return await request_json(session, method, f"{self.api}/{path}", params=query or None,
                                          json_body=json_body, headers={**auth, "User-Agent": self.user_agent})
            except AuthError as exc:
                if exc.status != 401 or refreshed:
                    raise
                log.info("Databricks answered 401 to %s %s; refreshing the credentials once", method, path)
                await self.auth.refresh(generation)
            except RequestRejected as exc:
                # The API answers 400 INVALID_PARAMETER_VALUE "Run <id> does not exist" for an unknown
                # run (databricks-sdk remaps it the same way).
                if "does not exist" in str(exc):
                    raise JobNotFoundError(str(exc), status=exc.status) from exc
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- reading runs -----------------------------------------------------------------------

    async def _run(self, run_id: str) -> Run:
        if not str(run_id).isdigit():
            raise JobNotFoundError(f"{run_id!r} is not a Databricks run id (run ids are integers)")
        pages = [await self._call("GET", "runs/get", params={"run_id": run_id})]
        while isinstance(pages[-1], Mapping) and (token := pages[-1].get("next_page_token")):
            pages.append(await self._call("GET", "runs/get", params={"run_id": run_id, "page_token": token}))
        if not isinstance(pages[0], Mapping):
            raise ServerError(f"runs/get of {run_id} answered {str(pages[0])[:200]!r}")
        return Run.parse(merge_pages(pages[0], [p for p in pages[1:] if isinstance(p, Mapping)]))

    def _basic_status(self, run: Run) -> JobStatus:
        """A status from what the run object itself says (no further requests)."""
        state = run.state
        message = f"queued: {state.queue_reason}" if not state.is_terminal and state.queue_reason else None
        return JobStatus(run.run_id, state.job_state, state.label, message=message or state.explain() or None,
                         diagnostics=f"tasks: {run.task_summary()}" if len(run.tasks) > 1 else None,
                         links={"run_page_url": run.run_page_url} if run.run_page_url else {})

    async def _failure_status(self, run: Run, status: JobStatus) -> JobStatus:
        """Name every failed task with its own error (``runs/get-output``) and keep its trace.

        The message carries the names, errors and per-task states (it heads the task's exception);
        the traces go to ``diagnostics``, trimmed so that all of them fit in what the exception shows.
        """
        lines, traces = [status.message or run.state.label], []
        for task, out in await self._outputs(run.failed_tasks()):
            error = clean_text(out.get("error")) or (task.task_key and task.state.explain()) or "no error reported"
            lines.append(f"{task.title} failed: {error}")
            if trace := clean_text(out.get("error_trace")):
                traces.append((f"--- {task.title} (run {task.run_id}) error trace ---", trace))
        message = "; ".join(lines) + (f" (tasks: {run.task_summary()})" if len(run.tasks) > 1 else "")
        limit = max(800, TRACE_LIMIT // max(1, len(traces)))
        diagnostics = "\n".join(f"{title}\n{trim(trace, limit)}" for title, trace in traces) or None
        return dataclasses.replace(status, message=message, diagnostics=diagnostics)

    async def _outputs(self, tasks: Sequence[TaskRun]) -> list[tuple[TaskRun, Mapping[str, Any]]]:
        """``runs/get-output`` of several task runs; one that fails to load must not hide the others."""
        semaphore = asyncio.Semaphore(_OUTPUT_CONCURRENCY)

        async def one(task: TaskRun) -> tuple[TaskRun, Mapping[str, Any]]:
            async with semaphore:
                try:
                    out = await self._call("GET", "runs/get-output", params={"run_id": task.run_id}, retry=True)
                except BackendError as exc:
                    log.warning("Could not read the output of run %s: %s", task.run_id, exc)
                    out = None
            return task, out if isinstance(out, Mapping) else {}

        return list(await asyncio.gather(*(one(t) for t in tasks)))

    # -- the Backend protocol ------------------------------------------------------------------

    async def submit(self, request: DatabricksRun, *, key: str, attempt: int = 1) -> JobStatus:
        """Send the run (its token is this try's: the operator derived it from ``key`` and ``attempt``,
        and recorded it before sending), or reattach to the earlier try's run of ``earlier_token``."""
        if not isinstance(request, DatabricksRun):
            raise ConfigurationError(
                "the Databricks backend submits DatabricksRun requests; run a SparkJob with "
                "DatabricksSubmitRunOperator(job=..., new_cluster=...)"
            )
        body = dict(request.body)
        body.setdefault("idempotency_token", key)
        if request.endpoint == RUN_NOW and "job_name" in body:
            body["job_id"] = await self.find_job_id(str(body.pop("job_name")))
        if request.endpoint == RUN_NOW and request.cancel_previous_runs:
            log.info("Cancelling the active runs of job %s first (cancel_previous_runs)", body["job_id"])
            await self._call("POST", "runs/cancel-all", json_body={"job_id": body["job_id"]}, retry=True)
        tokens = list(dict.fromkeys(t for t in (request.earlier_token, body["idempotency_token"]) if t))
        for token in tokens:
            answer = await self._call("POST", request.endpoint, json_body={**body, "idempotency_token": token},
                                      retry=True)
            if not isinstance(answer, Mapping) or answer.get("run_id") is None:
                raise ServerError(f"{request.endpoint} answered without a run_id: {str(answer)[:200]!r}")
            status = self._basic_status(await self._run(str(answer["run_id"])))
            if status.is_terminal and token != tokens[-1]:
                log.info("Run %s of an earlier try already ended %s; starting a new run", status.job_id,
                         status.backend_state)
                continue
            return status
        raise AssertionError("unreachable")  # pragma: no cover

    async def status(self, job_id: str) -> JobStatus:
        run = await self._run(job_id)
        status = self._basic_status(run)
        if status.is_terminal and (status.state is not JobState.SUCCEEDED or run.failed_tasks()):
            status = await self._failure_status(run, status)
        return status

    async def status_many(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        """Every watched run still on the workspace's active list, from ``runs/list``.

        Runs not found are asked for one by one by the watcher: they finished (and need
        ``runs/get`` for their outcome) or are not among the first pages. Paging stops once every
        run was found, or after ``len(job_ids) // 2 + 1`` pages, so listing never costs more than
        about half the requests per-run polling would.
        """
        wanted = {str(j) for j in job_ids}
        found: dict[str, JobStatus] = {}
        params: dict[str, Any] = {"active_only": True, "limit": LIST_PAGE_SIZE}
        for _page in range(len(wanted) // 2 + 1):
            answer = await self._call("GET", "runs/list", params=params)
            if not isinstance(answer, Mapping):
                raise ServerError(f"runs/list answered {str(answer)[:200]!r}")
            for obj in answer.get("runs") or ():
                if isinstance(obj, Mapping) and str(obj.get("run_id")) in wanted:
                    status = self._basic_status(Run.parse(obj))
                    found[status.job_id] = status
            token = answer.get("next_page_token")
            if len(found) == len(wanted) or not answer.get("has_more") or not token:
                break
            params["page_token"] = token
        return found

    async def cancel(self, job_id: str, *, key: str | None = None) -> None:
        """``runs/cancel``; cancelling is asynchronous (TERMINATING, then TERMINATED/CANCELED).
        ``key`` is not compared: Databricks never reuses a run id, and a run does not carry our key."""
        if not str(job_id).isdigit():
            return
        try:
            await self._call("POST", "runs/cancel", json_body={"run_id": int(job_id)}, retry=True)
        except JobNotFoundError:
            log.info("Run %s no longer exists; nothing to cancel", job_id)

    async def logs(self, job_id: str, *, tail_lines: int) -> str | None:
        """Per task: its state, ``error`` and trimmed ``error_trace``, the notebook's exit value and
        the tail of stdout/stderr that ``runs/get-output`` returns for python, jar and wheel tasks."""
        run = await self._run(job_id)
        tasks = sorted(run.latest_tasks(), key=lambda t: t.state.job_state is not JobState.FAILED)  # failed first
        parts = []
        for task, out in await self._outputs(tasks[:LOG_TASKS]):
            name = f"task {task.task_key} (run {task.run_id})" if task.task_key else f"run {run.run_id}"
            lines = [f"----- {name}: {task.state.label} -----"]
            if error := clean_text(out.get("error")):
                lines.append(f"error: {error}")
            if trace := clean_text(out.get("error_trace")):
                lines.append(trim(trace, TRACE_LIMIT))
            if result := clean_text((out.get("notebook_output") or {}).get("result")):
                lines.append(f"notebook result: {trim(result, 1000)}")
            if text := clean_text(out.get("logs")):
                lines.append("\n".join(text.splitlines()[-tail_lines:]))
                if out.get("logs_truncated"):
                    lines.append("(Databricks truncated these logs; the run page has all of them)")
            parts.append("\n".join(lines))
        if len(tasks) > LOG_TASKS:
            parts.append(f"… and {len(tasks) - LOG_TASKS} more tasks: see {run.run_page_url or 'the run page'}")
        return "\n".join(parts) or None

    # -- beyond the protocol ----------------------------------------------------------------

    async def notebook_outputs(self, job_id: str) -> dict[str, str]:
        """``dbutils.notebook.exit`` values of the run's successful notebook tasks, by task key."""
        run = await self._run(job_id)
        done = [t for t in run.latest_tasks() if t.is_notebook and t.state.job_state is JobState.SUCCEEDED]
        results = {}
        for task, out in await self._outputs(done):
            notebook = out.get("notebook_output") or {}
            if "result" in notebook:
                results[task.task_key] = str(notebook["result"])
                if notebook.get("truncated"):
                    log.warning("The notebook result of task %s was truncated by Databricks (5 MB limit)",
                                task.task_key)
        return results

    async def find_job_id(self, name: str) -> int:
        """The id of the one job named ``name`` (``jobs/list?name=`` matches exactly, ignoring case)."""
        ids: list[int] = []
        params: dict[str, Any] = {"name": name, "limit": 100}
        while True:
            answer = await self._call("GET", "list", params=params, retry=True) or {}
            ids += [int(j["job_id"]) for j in answer.get("jobs") or () if j.get("job_id") is not None]
            token = answer.get("next_page_token")
            if not answer.get("has_more") or not token:
                break
            params["page_token"] = token
        if not ids:
            raise ConfigurationError(f"Job ID for job name {name!r} can not be found")
        if len(ids) > 1:
            raise ConfigurationError(f"There are more than one job with name {name!r} ({sorted(ids)}); use job_id")
        return ids[0]
