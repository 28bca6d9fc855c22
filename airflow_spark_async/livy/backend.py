"""Livy backend: batches through Livy's REST API, over the core's pooled aiohttp sessions.

* **Submit** — ``POST /batches``. The batch *name* carries the task's deterministic key:
  ``<name>-<key>``. Livy refuses a second live batch of the same name, so the name doubles as a
  server-side lock: a duplicate submission of a try that is still running is answered with the
  running batch instead of a second one. Livy keeps a finished batch's name until the batch is
  garbage-collected, so a retry after a failure submits ``<name>-<key>-<n>``.
* **Keys** — every status built from a Batch object (``POST /batches``, ``GET /batches``,
  ``GET /batches/{id}``) carries the key found in the batch's name (:attr:`JobStatus.key`). Livy
  without session recovery restarts its ids at 0, so after a restart an id the core remembers may
  name *another* batch: the key is what tells them apart, and the core compares it.
* **Lookup** — ``find_jobs(family)`` pages through ``GET /batches`` newest first and returns every
  batch whose name carries a key of that family; ``find_by_key`` the newest of exactly one key
  (``supports_find_by_key``: no Airflow-side ledger needed).
* **Watch** — ``status_many`` answers every trigger of one Livy server (and identity) with paged
  ``GET /batches``, as many pages as it takes to reach the oldest watched batch (or fewer, when
  asking the rest one by one is cheaper); ``status`` (``GET /batches/{id}``, which has the name) is
  the fallback and the full story once a batch has ended.
* **Gone** — a batch Livy no longer knows answers 404: it was deleted, garbage-collected
  ``livy.server.session.state-retain.sec`` (default 600 s) after it ended, or Livy restarted without
  recovery. That is :class:`JobNotFoundError`, saying so; what follows is the core's decision.
* **Logs** — ``GET /batches/{id}/log`` paged backwards from the end with ``from``/``size``, the
  cursor kept between pages, so the task log gets the *last* lines, as many as asked.
* **Cancel** — ``DELETE /batches/{id}``; a batch Livy no longer knows needs no cancelling. Given the
  ``key``, the batch's name is checked first, and a batch that carries another key is never deleted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_spark_async.core.backend import Backend, JobStatus, status_if_carrying
from airflow_spark_async.core.errors import (
    ConnectionFailed,
    JobNotFoundError,
    RequestRejected,
    ServerError,
)
from airflow_spark_async.core.http import get_session, request_json
from airflow_spark_async.core.keys import find_key, parse_key
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.core.states import JobState
from airflow_spark_async.livy.hook import LivyOptions, LivySettings

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["BATCH_STATES", "LivyBackend", "LivyBatch", "LivyJob", "batch_name", "build_batch_request"]

log = logging.getLogger(__name__)

#: Livy's session states → ours. The interactive-only states are listed too: a gateway or a newer
#: Livy may report them for batches, and none of them is an end. ``shutting_down`` is CANCELLING:
#: Livy enters it only from ``stopSession`` — a DELETE or its own timeout stopping the session — and
#: never leaves it for anything but an end, so it is a stop in progress, never a job to reattach to.
BATCH_STATES: dict[str, JobState] = {
    "not_started": JobState.PENDING,
    "starting": JobState.PENDING,
    "recovering": JobState.PENDING,
    "idle": JobState.RUNNING,
    "running": JobState.RUNNING,
    "busy": JobState.RUNNING,
    "shutting_down": JobState.CANCELLING,
    "success": JobState.SUCCEEDED,
    "error": JobState.FAILED,
    "dead": JobState.FAILED,
    "killed": JobState.CANCELLED,
}
_EXPLAIN = {
    "dead": "the Spark application failed: spark-submit or the application exited with an error",
    "error": "Livy reported an error for the batch (state 'error')",
    "killed": "the batch was killed (DELETE /batches/{id}, or the cluster manager killed the application)",
}
_DUPLICATE_NAME = "Duplicate session name"
#: Livy's setting after which an ended batch is forgotten (404), named in the not-found message
STATE_RETAIN_SETTING = "livy.server.session.state-retain.sec"


@dataclasses.dataclass
class LivyJob(SparkJob):
    """A :class:`SparkJob` plus the two batch fields Livy has and the portable spec has not.

    :param queue: the YARN queue (``queue`` of ``POST /batches``).
    :param proxy_user: the user to impersonate (``proxyUser``).
    """

    queue: str | None = None
    proxy_user: str | None = None


@dataclasses.dataclass(frozen=True)
class LivyBatch:
    """One Batch object of Livy's API, parsed at the edge; unknown fields are ignored."""

    id: str
    state: str
    name: str | None = None
    app_id: str | None = None
    spark_ui_url: str | None = None
    driver_log_url: str | None = None
    log: tuple[str, ...] = ()

    @classmethod
    def parse(cls, data: Any, *, what: str) -> LivyBatch:
        if not isinstance(data, Mapping) or data.get("id") is None or not isinstance(data.get("state"), str):
            raise ServerError(f"{what}: Livy answered {str(data)[:200]!r}, not a batch")
        raw_info, raw_log = data.get("appInfo"), data.get("log")
        info: Mapping[str, Any] = raw_info if isinstance(raw_info, Mapping) else {}
        log: list[Any] = raw_log if isinstance(raw_log, list) else []
        return cls(
            id=str(data["id"]),
            state=data["state"],
            name=data.get("name") if isinstance(data.get("name"), str) else None,
            app_id=data.get("appId") or None,
            spark_ui_url=info.get("sparkUiUrl") or None,
            driver_log_url=info.get("driverLogUrl") or None,
            log=tuple(str(line) for line in log),
        )

    @property
    def key(self) -> str | None:
        """The key in the batch's name (``<name>-<key>`` or ``<name>-<key>-<n>``), if it has one."""
        return find_key(self.name)


def batch_name(base: str, key: str, attempt: int = 0) -> str:
    """``<base>-<key>`` for the first submission of a try, ``<base>-<key>-<attempt>`` after that."""
    name = f"{base}-{key}"
    return f"{name}-{attempt}" if attempt else name


def _attempt_of(name: str, key: str) -> int:
    """The ``<attempt>`` of a name made by :func:`batch_name`; 0 for the first one."""
    tail = name.rsplit(key, 1)[-1]
    return int(tail[1:]) if tail.startswith("-") and tail[1:].isdigit() else 0


def build_batch_request(job: SparkJob, *, name: str) -> dict[str, Any]:
    """The ``POST /batches`` body (CreateBatchRequest) for ``job``; empty fields are left out, as the
    official hook does, because Livy rejects some of them (``null`` lists) on older releases."""
    body: dict[str, Any] = {"file": job.application, "name": name}
    for field, key in (
        ("main_class", "className"),
        ("driver_memory", "driverMemory"),
        ("driver_cores", "driverCores"),
        ("executor_memory", "executorMemory"),
        ("executor_cores", "executorCores"),
        ("num_executors", "numExecutors"),
        ("queue", "queue"),
        ("proxy_user", "proxyUser"),
    ):
        if value := getattr(job, field, None):
            body[key] = value
    for field, key in (("args", "args"), ("jars", "jars"), ("py_files", "pyFiles"), ("files", "files"),
                       ("archives", "archives")):
        if values := getattr(job, field):
            body[key] = list(values)
    conf = dict(job.conf)
    if job.packages:
        conf["spark.jars.packages"] = ",".join(job.packages)
    for var, value in job.env.items():  # what spark-submit does with the driver's environment
        conf[f"spark.yarn.appMasterEnv.{var}"] = value
        conf[f"spark.kubernetes.driverEnv.{var}"] = value
    if conf:
        body["conf"] = conf
    return body


class LivyBackend(Backend):
    """Batches on one Livy server (see the module docstring)."""

    name: ClassVar[str] = "livy"
    supports_find_by_key: ClassVar[bool] = True

    def __init__(self, settings: LivySettings, options: LivyOptions | None = None) -> None:
        self.settings = settings
        self.page_size = (options or LivyOptions()).page_size
        self._total_hint = 0  # GET /batches "total" last seen: where the newest page starts
        self._next_attempt: dict[str, int] = {}  # key -> the name suffix a new submission must take

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        LivyOptions.from_dict(options)

    @classmethod
    async def from_connection(cls, conn: Connection, options: Mapping[str, Any]) -> LivyBackend:
        parsed = LivyOptions.from_dict(options)
        return cls(LivySettings.from_connection(conn, parsed), parsed)

    @property
    def watch_key(self) -> str:
        return self.settings.watch_key

    def identity(self) -> str:
        """Endpoint + a digest of the headers (credentials) — see :attr:`LivySettings.identity`."""
        return self.settings.identity

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        session = get_session(self.settings.origin, verify_ssl=self.settings.verify_ssl)
        url = self.settings.base_url + path
        call = request_json(session, method, url, headers=self.settings.headers, **kwargs)
        if self.settings.timeout is None:
            return await call
        try:
            return await asyncio.wait_for(call, self.settings.timeout)
        except asyncio.TimeoutError as exc:
            raise ConnectionFailed(f"{method} {url} took longer than {self.settings.timeout}s") from exc

    # -- submit and reattach ---------------------------------------------------------------

    async def submit(self, job: SparkJob, *, key: str) -> JobStatus:
        base = job.name or "spark-job"
        # After find_by_key saw an ended batch of this key, its name is still taken: use the next one.
        attempt = self._next_attempt.pop(key, 0)
        while True:
            body = build_batch_request(job, name=batch_name(base, key, attempt))
            try:
                created = await self._call("POST", "/batches", json_body=body)
            except RequestRejected as exc:
                if _DUPLICATE_NAME not in str(exc) or attempt >= 20:
                    raise
                # Another submission of this key holds the name. While it runs it *is* this try's
                # batch (a worker that crashed after Livy accepted it); once ended, take a new name.
                existing = await self.find_by_key(key)
                if existing is not None and existing.state in (JobState.PENDING, JobState.RUNNING):
                    return existing
                attempt = max(attempt + 1, self._next_attempt.pop(key, 0))
                continue
            return self._status(LivyBatch.parse(created, what="POST /batches"))

    async def find_by_key(self, key: str) -> JobStatus | None:
        """The newest batch whose name carries exactly ``key`` — never one of another key that merely
        contains it as a substring (``…-1`` is not ``…-12``)."""
        async for batch in self._batches_newest_first():
            if batch.key == key:
                self._next_attempt[key] = _attempt_of(batch.name or "", key) + 1
                return self._status(batch)
        return None

    async def find_jobs(self, family: str) -> Sequence[JobStatus]:
        """Every batch Livy still lists whose key belongs to ``family``, newest first. Pages through
        the whole list: a lookup by key must see every batch, and it runs once per try, not per poll."""
        found: list[JobStatus] = []
        async for batch in self._batches_newest_first():
            key = batch.key
            parsed = parse_key(key) if key else None
            if key is None or parsed is None or parsed.family != family:
                continue
            self._next_attempt.setdefault(key, _attempt_of(batch.name or "", key) + 1)
            found.append(self._status(batch))
        return found

    # -- watch ---------------------------------------------------------------------------------

    async def status(self, job_id: str) -> JobStatus:
        """``GET /batches/{id}``: the state *and* the name — so the key — in one request, plus the
        appInfo links and the last log lines for an end. (``/state`` is smaller but has no name, and
        without the name a batch of someone else at a reused id would pass for ours.)"""
        return self._status(await self.batch(job_id))

    async def status_many(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        """Paged ``GET /batches``, newest first, as far back as the oldest watched batch.

        Ids grow with creation order and the list is in creation order, so once a page starts at or
        below the oldest wanted id there is nothing left to find. The walk also stops when the pages
        still to read (bounded by the remaining list and by the id distance) outnumber the batches
        still missing: asking those one by one (``status``) is then fewer requests.
        """
        wanted = {str(job_id) for job_id in job_ids}
        numeric = [int(j) for j in wanted if j.isdigit()]
        found: dict[str, JobStatus] = {}
        if not numeric:
            return found
        oldest = min(numeric)
        async for start, page in self._pages_newest_first():
            for batch in page:
                if batch.id in wanted:
                    found[batch.id] = self._status(batch)
            ids = [int(b.id) for b in page if b.id.isdigit()]
            if len(found) == len(wanted) or not ids or min(ids) <= oldest or start <= 0:
                break
            seen_oldest = min(ids)
            missing = sum(1 for i in numeric if i < seen_oldest and str(i) not in found)
            pages_left = min(math.ceil(start / self.page_size), math.ceil((seen_oldest - oldest) / self.page_size))
            if missing < pages_left:
                break
        return found

    async def batch(self, job_id: str) -> LivyBatch:
        """The whole Batch object (``GET /batches/{id}``): appId, appInfo, the last log lines."""
        batch_id = _batch_id(job_id)
        detail = await self._get_known(f"/batches/{batch_id}", batch_id)
        return LivyBatch.parse(detail, what=f"GET /batches/{batch_id}")

    async def _get_known(self, path: str, batch_id: str) -> Any:
        try:
            return await self._call("GET", path)
        except JobNotFoundError as exc:
            raise JobNotFoundError(
                f"Livy at {self.settings.base_url} does not know batch {batch_id} (404): it was deleted, "
                f"garbage-collected after it ended ({STATE_RETAIN_SETTING}, 600 s by default), or Livy "
                f"restarted without session recovery ({exc})",
                status=404,
            ) from exc

    async def _pages_newest_first(self) -> AsyncIterator[tuple[int, list[LivyBatch]]]:
        """``(from, page)`` of ``GET /batches``, newest first. Livy lists batches in creation order and
        ``total`` counts them all, so the newest page starts at ``total - size``; the last ``total``
        seen is the guess for the next cycle, which makes the steady state one request."""
        size = self.page_size
        start = max(0, self._total_hint - size)
        total, sessions = await self._list(start, size)
        if start + len(sessions) < total:  # more batches than last time: jump to the real tail
            start = max(0, total - size)
            total, sessions = await self._list(start, size)
        self._total_hint = total
        yield start, sessions[::-1]
        while start > 0:
            # Going backwards: a batch garbage-collected meanwhile shifts older ones left, which can
            # only repeat a batch on the next page, never skip one.
            begin = max(0, start - size)
            _total, sessions = await self._list(begin, start - begin)
            start = begin
            yield start, sessions[::-1]

    async def _batches_newest_first(self) -> AsyncIterator[LivyBatch]:
        seen: set[str] = set()
        async for _start, page in self._pages_newest_first():
            for batch in page:
                if batch.id not in seen:  # a shifted page may repeat one
                    seen.add(batch.id)
                    yield batch

    async def _list(self, start: int, size: int) -> tuple[int, list[LivyBatch]]:
        data = await self._call("GET", "/batches", params={"from": start, "size": size})
        if not isinstance(data, Mapping) or not isinstance(data.get("sessions"), list):
            raise ServerError(f"GET /batches: Livy answered {str(data)[:200]!r}")
        total = data.get("total")
        sessions = [LivyBatch.parse(item, what="GET /batches") for item in data["sessions"]]
        return (int(total) if isinstance(total, int) else start + len(sessions)), sessions

    def _status(self, batch: LivyBatch) -> JobStatus:
        state = BATCH_STATES.get(batch.state, JobState.PENDING)
        links = self.links(batch.id)
        if batch.spark_ui_url:
            links["spark_ui"] = batch.spark_ui_url
        if batch.driver_log_url:
            links["driver_log"] = batch.driver_log_url
        message = _EXPLAIN.get(batch.state)
        if message and batch.app_id:
            message = f"{message} (application {batch.app_id})"
        diagnostics = None
        if state in (JobState.FAILED, JobState.CANCELLED):
            lines = [line for line in batch.log if not _is_marker(line)]
            diagnostics = "\n".join(lines) or None
        return JobStatus(batch.id, state, batch.state, message=message, diagnostics=diagnostics, links=links,
                         key=batch.key)

    # -- cancel, logs, links ---------------------------------------------------------------------

    async def cancel(self, job_id: str, *, key: str | None = None) -> None:
        """``DELETE /batches/{id}``; a 404 means Livy no longer knows the batch — nothing left to stop.

        With ``key``, the batch is read first (``GET /batches/{id}``) and deleted only if its name
        carries exactly that key and it has not ended: after a Livy restart without recovery the id
        may belong to another batch, and deleting it would kill someone else's job. The check and the
        delete are two requests, so a Livy restart *between* them (milliseconds) is not covered.
        """
        batch_id = _batch_id(job_id)
        if key is not None:
            status = await status_if_carrying(self, job_id, key, f"Livy batch {batch_id}", require_key=True)
            if status is None or status.is_terminal:
                return  # not ours (a reused id), gone, or ended: nothing to stop, and its log stays readable
        await self._call("DELETE", f"/batches/{batch_id}", not_found_ok=True)

    async def logs(self, job_id: str, *, tail_lines: int) -> str | None:
        """The last ``tail_lines`` lines of the batch log, read backwards page by page."""
        batch_id = _batch_id(job_id)
        if tail_lines <= 0:
            return None
        size = min(self.page_size, tail_lines)
        chunks: list[list[str]] = []
        cursor: int | None = None  # the "from" of the oldest page read so far
        collected = 0
        while collected < tail_lines and cursor != 0:
            params = {"size": size} if cursor is None else {"from": max(0, cursor - size), "size": min(size, cursor)}
            data = await self._call("GET", f"/batches/{batch_id}/log", params=params, not_found_ok=True)
            if not isinstance(data, Mapping) or not isinstance(data.get("log"), list) or not data["log"]:
                break  # gone (404), malformed, or nothing (more) to read
            cursor = int(data.get("from") or 0)
            lines = [str(line) for line in data["log"] if not _is_marker(str(line))]
            chunks.append(lines)
            collected += len(lines)
        lines = [line for chunk in reversed(chunks) for line in chunk][-tail_lines:]
        return "\n".join(lines) if lines else None

    def links(self, job_id: str) -> dict[str, str]:
        return {"livy_batch": f"{self.settings.ui_url}/ui/batch/{job_id}/log"}


def _batch_id(job_id: str) -> str:
    """Livy batch ids are integers; anything else would be looked up as a batch *name*."""
    text = str(job_id).strip()
    if not text.isdigit():
        raise RequestRejected(f"a Livy batch id is a non-negative integer, got {job_id!r}")
    return text


def _is_marker(line: str) -> bool:
    """Livy's process log starts with ``stdout: `` and ends with ``\\nstderr: `` — headings, not output."""
    return line.strip() in ("stdout:", "stderr:")
