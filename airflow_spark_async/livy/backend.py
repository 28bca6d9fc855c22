"""Livy backend: Spark batches through Livy's REST API (docs/livy.md tells the whole story).

* **Submit** — ``POST /batches`` named ``<name>-<key>``. Livy refuses a second live batch of one
  name, so the name is a server-side lock; it keeps an ended batch's name until the batch is
  collected, so a later submission of the key takes ``<name>-<key>-<n>``.
* **Keys** — every status built from a Batch object carries the key of its name: Livy without
  session recovery restarts ids at 0, and the key tells a reused id's batch apart.
* **Watch** — ``status_many`` pages ``GET /batches`` newest first, back to the oldest watched batch.
* **Gone** — a 404 is :class:`JobNotFoundError` saying why (deleted, collected, restarted).
* **Cancel** — ``DELETE /batches/{id}``, only of a batch that carries the key and still runs.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from yarl import URL

from airflow_spark_async.core.backend import (
    Backend,
    JobState,
    JobStatus,
    credential_digest,
    find_key,
    parse_key,
    status_if_carrying,
)
from airflow_spark_async.core.errors import (
    ConfigurationError,
    JobNotFoundError,
    RequestRejected,
    ServerError,
)
from airflow_spark_async.core.http import DEFAULT_OPTIONS, HttpOptions, request_json
from airflow_spark_async.core.runtime import Runtime
from airflow_spark_async.core.spec import (
    FILE_FIELDS,
    K8S_DRIVER_ENV,
    RESOURCE_FIELDS,
    YARN_DRIVER_ENV,
    BackendOptions,
    SparkJob,
    option,
)
from airflow_spark_async.livy.compat import AUTH_TYPES, check_secret_free, requests_options, split_extra

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["BATCH_STATES", "LivyBackend", "LivyBatch", "LivyBatchRequest", "LivyOptions", "LivySettings", "batch_name"]

#: Livy's session states → ours; the interactive-only ones too (gateways report them), none an end.
#: ``shutting_down`` is entered only from ``stopSession`` and left only for an end: a stop in progress.
BATCH_STATES: dict[str, JobState] = {
    "not_started": JobState.PENDING, "starting": JobState.PENDING, "recovering": JobState.PENDING,
    "idle": JobState.RUNNING, "running": JobState.RUNNING, "busy": JobState.RUNNING,
    "shutting_down": JobState.CANCELLING, "success": JobState.SUCCEEDED, "error": JobState.FAILED,
    "dead": JobState.FAILED, "killed": JobState.CANCELLED,
}
_EXPLAIN = {
    "dead": "the Spark application failed: spark-submit or the application exited with an error",
    "error": "Livy reported an error for the batch (state 'error')",
    "killed": "the batch was killed (DELETE /batches/{id}, or the cluster manager killed the application)",
}
#: Livy refuses POST/DELETE without this header when CSRF protection is on; harmless when it is off.
CSRF_HEADER = "X-Requested-By"
_BODY_FIELDS = (("main_class", "className"), ("driver_memory", "driverMemory"), ("driver_cores", "driverCores"),
                ("executor_memory", "executorMemory"), ("executor_cores", "executorCores"),
                ("num_executors", "numExecutors"), ("args", "args"), ("jars", "jars"), ("py_files", "pyFiles"),
                ("files", "files"), ("archives", "archives"))


@dataclasses.dataclass(frozen=True)
class LivyBatchRequest:
    """What ``POST /batches`` sends: the job, named, and the two batch fields the spec has not."""

    job: SparkJob
    queue: str | None = None
    proxy_user: str | None = None

    def body(self, name: str) -> dict[str, Any]:
        """The CreateBatchRequest; empty fields are left out, as the official hook does (older Livy
        releases reject ``null`` lists). Livy has no environment field: ``env`` goes to the driver's."""
        job = self.job
        body: dict[str, Any] = {"file": job.application, "name": name}
        body.update({key: value for field, key in _BODY_FIELDS if (value := getattr(job, field))})
        body.update({key: value for key, value in (("queue", self.queue), ("proxyUser", self.proxy_user)) if value})
        conf = job.spark_properties(exclude=("name", *RESOURCE_FIELDS, *FILE_FIELDS),
                                    env_prefixes=(YARN_DRIVER_ENV, K8S_DRIVER_ENV))
        return {**body, "conf": conf} if conf else body


@dataclasses.dataclass(frozen=True)
class LivyOptions(BackendOptions):
    """The backend options of a Livy operator, sensor or trigger: JSON-safe and free of secrets.

    :param endpoint_prefix: path in front of ``/batches`` (Knox), over the connection's.
    :param auth_type: ``basic``, ``bearer`` or ``none``, over the connection's choice.
    :param extra_headers: headers over the connection's; credentials are refused (stored in clear).
    :param extra_options: the official ``requests`` options (see :mod:`.compat`).
    :param page_size: sessions per ``GET /batches`` page and lines per log page.
    """

    what: ClassVar[str] = "Livy backend options"
    endpoint_prefix: str | None = None
    auth_type: str | None = option(None, choices=AUTH_TYPES)
    extra_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    extra_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    page_size: int = option(100, ge=1, le=10_000)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "extra_headers", check_secret_free(self.extra_headers))
        object.__setattr__(self, "extra_options", requests_options(self.extra_options))


def _prefix(value: Any) -> str:
    """``/gateway/default/livy/v1`` from any spelling (``gateway/default/livy/v1/``…), or ``""``."""
    text = str(value or "").strip().strip("/")
    return f"/{text}" if text else ""


@dataclasses.dataclass(frozen=True)
class LivySettings:
    """A ``livy`` connection plus the backend options, parsed once; ``headers`` hold the credentials
    and are never part of ``repr``."""

    origin: str
    prefix: str
    ui_url: str
    http: HttpOptions = DEFAULT_OPTIONS
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def base_url(self) -> str:
        return self.origin + self.prefix

    watch_key = base_url

    @property
    def identity(self) -> str:
        """Endpoint *and* who asks (principals may see different batches): the headers enter as a
        digest, never as the secret itself."""
        return f"{self.base_url}|{credential_digest(self.headers)}"

    @classmethod
    def from_connection(cls, conn: Connection, options: LivyOptions) -> LivySettings:
        what = f"connection {conn.conn_id!r}"
        if not conn.host:
            raise ConfigurationError(f"{what}: host (the Livy server's address) is required")
        extra, headers = split_extra(dict(conn.extra_dejson or {}), f"{what} extra")
        host = conn.host.strip()
        url = URL(host if "://" in host else f"{(conn.schema or 'http').strip().lower()}://{host}")
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(f"{what}: schema must be http or https and host a host name, got "
                                     f"{url.scheme!r} and {conn.host!r}")
        port = conn.port or url.explicit_port
        origin = f"{url.scheme}://{url.raw_host}" + (f":{port}" if port else "")
        # The host's own path, then the prefix (operator argument over connection extra), as one path.
        prefix = _prefix(url.raw_path) + _prefix(
            options.endpoint_prefix if options.endpoint_prefix is not None else extra.get("endpoint_prefix"))
        return cls(
            origin=origin,
            prefix=prefix,
            ui_url=str(extra.get("ui_url") or origin + prefix).rstrip("/"),
            http=HttpOptions.from_extras({**extra, **options.extra_options}, scheme=url.scheme),
            headers={"Accept": "application/json", CSRF_HEADER: "airflow-spark-async", **headers,
                     **options.extra_headers, **_auth_headers(conn, options.auth_type or extra.get("auth_type"))},
        )


def _auth_headers(conn: Connection, auth_type: Any) -> dict[str, str]:
    kind = str(auth_type).strip().lower() if auth_type else ("basic" if conn.login else "bearer")
    if kind not in AUTH_TYPES:
        raise ConfigurationError(f"connection {conn.conn_id!r}: auth_type must be one of {list(AUTH_TYPES)}")
    if kind == "basic" and conn.login:
        token = base64.b64encode(f"{conn.login}:{conn.password or ''}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}
    if kind == "bearer" and conn.password:
        return {"Authorization": f"Bearer {conn.password}"}
    if kind != "none" and auth_type:
        raise ConfigurationError(f"connection {conn.conn_id!r}: auth_type {kind!r} needs "
                                 + ("a login" if kind == "basic" else "a token in the password field"))
    return {}


@dataclasses.dataclass(frozen=True)
class LivyBatch:
    """One Batch object of Livy's API, parsed at the edge; unknown fields are ignored."""

    id: str
    state: str
    name: str | None = None
    app_id: str | None = None
    links: Mapping[str, str] = dataclasses.field(default_factory=dict)
    log: tuple[str, ...] = ()

    @classmethod
    def parse(cls, data: Any, *, what: str) -> LivyBatch:
        if not isinstance(data, Mapping) or data.get("id") is None or not isinstance(data.get("state"), str):
            raise ServerError(f"{what}: Livy answered {str(data)[:200]!r}, not a batch")
        info = data.get("appInfo") if isinstance(data.get("appInfo"), Mapping) else {}
        links = {"spark_ui": info.get("sparkUiUrl"), "driver_log": info.get("driverLogUrl")}
        return cls(
            id=str(data["id"]),
            state=data["state"],
            name=data["name"] if isinstance(data.get("name"), str) else None,
            app_id=data.get("appId") or None,
            links={link: url for link, url in links.items() if url},
            log=tuple(str(line) for line in data["log"] if not _is_marker(str(line)))
            if isinstance(data.get("log"), list) else (),
        )

    @property
    def key(self) -> str | None:
        return find_key(self.name)


def batch_name(base: str, key: str, attempt: int = 0) -> str:
    """``<base>-<key>`` for the first submission of a key, ``<base>-<key>-<attempt>`` after that."""
    return f"{base}-{key}-{attempt}" if attempt else f"{base}-{key}"


def _attempt_of(name: str, key: str) -> int:
    tail = name.rsplit(key, 1)[-1]
    return int(tail[1:]) if tail.startswith("-") and tail[1:].isdigit() else 0


class LivyBackend(Backend[LivyBatchRequest]):
    """Batches on one Livy server (see the module docstring)."""

    name: ClassVar[str] = "livy"
    supports_find_by_key: ClassVar[bool] = True

    def __init__(self, settings: LivySettings, options: LivyOptions | None = None) -> None:
        self.settings = settings
        self.page_size = (options or LivyOptions()).page_size
        self._total_hint = 0  # GET /batches "total" last seen: where the newest page starts
        self._next_attempt: dict[str, int] = {}  # key -> the name suffix its next submission takes

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        LivyOptions.from_options(options)

    @classmethod
    async def from_connection(cls, conn: Connection, options: Mapping[str, Any]) -> LivyBackend:
        parsed = LivyOptions.from_options(options)
        return cls(LivySettings.from_connection(conn, parsed), parsed)

    @property
    def watch_key(self) -> str:
        return self.settings.watch_key

    def identity(self) -> str:
        return self.settings.identity

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        session = Runtime.current().session(self.settings.origin, self.settings.http)
        return await request_json(session, method, self.settings.base_url + path, headers=self.settings.headers,
                                  **kwargs)

    async def submit(self, request: LivyBatchRequest, *, key: str, attempt: int = 1) -> JobStatus:
        """Submit under the key's name; ``attempt`` is not needed: the name is the lock."""
        # After a lookup saw an ended batch of this key, its name is still taken: use the next one.
        suffix = self._next_attempt.pop(key, 0)
        while True:
            body = request.body(batch_name(request.job.name or "spark-job", key, suffix))
            try:
                return self._status(LivyBatch.parse(await self._call("POST", "/batches", json_body=body),
                                                    what="POST /batches"))
            except RequestRejected as exc:
                if "Duplicate session name" not in str(exc) or suffix >= 20:
                    raise
            # Another submission of this key holds the name. While it runs it *is* this try's batch (a
            # worker that crashed after Livy accepted it); once ended (or stopping), take a new name.
            existing = await self.find_by_key(key)
            if existing is not None and existing.state in (JobState.PENDING, JobState.RUNNING):
                return existing
            suffix = max(suffix + 1, self._next_attempt.pop(key, 0))

    async def find_by_key(self, key: str) -> JobStatus | None:
        """The newest batch whose name carries exactly ``key`` (``…-1`` is not ``…-12``)."""
        async for batch in self._batches_newest_first():
            if batch.key == key:
                self._next_attempt[key] = _attempt_of(batch.name or "", key) + 1
                return self._status(batch)
        return None

    async def find_jobs(self, family: str) -> Sequence[JobStatus]:
        """Every listed batch of ``family``, newest first: the whole list, once per try, not per poll."""
        found: list[JobStatus] = []
        async for batch in self._batches_newest_first():
            parsed = parse_key(batch.key or "")
            if batch.key and parsed is not None and parsed.family == family:
                self._next_attempt.setdefault(batch.key, _attempt_of(batch.name or "", batch.key) + 1)
                found.append(self._status(batch))
        return found

    async def status(self, job_id: str) -> JobStatus:
        """``GET /batches/{id}``: the state *and* the name (so the key); ``/state`` has no name."""
        return self._status(await self.batch(job_id))

    async def status_many(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        """Paged ``GET /batches``, newest first, as far back as the oldest watched batch.

        Ids grow in list order, so a page starting at or below the oldest wanted id ends the walk;
        so do more pages left to read than batches missing (asking those alone is fewer requests).
        """
        wanted = {str(job_id) for job_id in job_ids}
        numeric = [int(j) for j in wanted if j.isdigit()]
        found: dict[str, JobStatus] = {}
        if not numeric:
            return found
        oldest = min(numeric)
        async for start, page in self._pages_newest_first():
            found.update({batch.id: self._status(batch) for batch in page if batch.id in wanted})
            ids = [int(b.id) for b in page if b.id.isdigit()]
            if len(found) == len(wanted) or not ids or min(ids) <= oldest or start <= 0:
                break
            missing = sum(1 for i in numeric if i < min(ids) and str(i) not in found)
            if missing < min(math.ceil(start / self.page_size), math.ceil((min(ids) - oldest) / self.page_size)):
                break
        return found

    async def batch(self, job_id: str) -> LivyBatch:
        """The whole Batch object (``GET /batches/{id}``): appId, appInfo, the last log lines."""
        batch_id = _batch_id(job_id)
        try:
            detail = await self._call("GET", f"/batches/{batch_id}")
        except JobNotFoundError as exc:
            raise JobNotFoundError(
                f"Livy at {self.settings.base_url} does not know batch {batch_id} (404): it was deleted, "
                "garbage-collected after it ended (livy.server.session.state-retain.sec, 600 s by default), "
                f"or Livy restarted without session recovery ({exc})", status=404) from exc
        return LivyBatch.parse(detail, what=f"GET /batches/{batch_id}")

    async def _pages_newest_first(self) -> AsyncIterator[tuple[int, list[LivyBatch]]]:
        """``(from, page)`` of ``GET /batches``, newest first. The list is in creation order and
        ``total`` counts it, so the newest page starts at ``total - size``; the last ``total`` seen
        guesses the next cycle's, which makes the steady state one request. Going backwards, a batch
        collected meanwhile can only repeat one on the next page, never skip one."""
        size = self.page_size
        start = max(0, self._total_hint - size)
        total, sessions = await self._list(start, size)
        if start + len(sessions) < total:  # more batches than last time: jump to the real tail
            start = max(0, total - size)
            total, sessions = await self._list(start, size)
        self._total_hint = total
        yield start, sessions[::-1]
        while start > 0:
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
        sessions = [LivyBatch.parse(item, what="GET /batches") for item in data["sessions"]]
        total = data.get("total")
        return (total if isinstance(total, int) else start + len(sessions)), sessions

    def _status(self, batch: LivyBatch) -> JobStatus:
        state = BATCH_STATES.get(batch.state, JobState.PENDING)
        message = _EXPLAIN.get(batch.state)
        if message and batch.app_id:
            message = f"{message} (application {batch.app_id})"
        failed = state in (JobState.FAILED, JobState.CANCELLED)
        diagnostics = ("\n".join(batch.log) or None) if failed else None
        return JobStatus(batch.id, state, batch.state, message=message, diagnostics=diagnostics,
                         links={**self.links(batch.id), **batch.links}, key=batch.key)

    async def cancel(self, job_id: str, *, key: str | None = None) -> None:
        """``DELETE /batches/{id}``; a 404 needs no cancelling. With ``key``, a batch that carries
        another key (a reused id) or has ended is left alone — the check and the delete are two
        requests, so a restart *between* them is not covered."""
        batch_id = _batch_id(job_id)
        if key is not None:
            status = await status_if_carrying(self, job_id, key, f"Livy batch {batch_id}", require_key=True)
            if status is None or status.is_terminal:
                return
        await self._call("DELETE", f"/batches/{batch_id}", not_found_ok=True)

    async def logs(self, job_id: str, *, tail_lines: int) -> str | None:
        """The last ``tail_lines`` lines of the batch log, read backwards page by page."""
        batch_id = _batch_id(job_id)
        if tail_lines <= 0:
            return None
        size = min(self.page_size, tail_lines)
        chunks: list[list[str]] = []
        cursor: int | None = None  # the "from" of the oldest page read so far
        while sum(map(len, chunks)) < tail_lines and cursor != 0:
            params = {"size": size} if cursor is None else {"from": max(0, cursor - size), "size": min(size, cursor)}
            data = await self._call("GET", f"/batches/{batch_id}/log", params=params, not_found_ok=True)
            if not isinstance(data, Mapping) or not isinstance(data.get("log"), list) or not data["log"]:
                break  # gone (404), malformed, or nothing (more) to read
            cursor = int(data.get("from") or 0)
            chunks.append([str(line) for line in data["log"] if not _is_marker(str(line))])
        lines = [line for chunk in reversed(chunks) for line in chunk][-tail_lines:]
        return "\n".join(lines) or None

    def links(self, job_id: str) -> dict[str, str]:
        return {"livy_batch": f"{self.settings.ui_url}/ui/batch/{job_id}/log"}

    async def probe(self) -> str:
        total, _ = await self._list(0, 1)
        return f"Livy at {self.settings.base_url} answered: {total} batch(es)"


def _batch_id(job_id: str) -> str:
    """Livy batch ids are integers; anything else would be looked up as a batch *name*."""
    text = str(job_id).strip()
    if not text.isdigit():
        raise RequestRejected(f"a Livy batch id is a non-negative integer, got {job_id!r}")
    return text


def _is_marker(line: str) -> bool:
    """Livy's process log starts with ``stdout: `` and ends with ``\\nstderr: `` — headings, not output."""
    return line.strip() in ("stdout:", "stderr:")
