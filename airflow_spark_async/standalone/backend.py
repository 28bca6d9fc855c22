"""Spark standalone backend: the master's REST submission API plus its web UI's JSON.

Drivers run in cluster mode (Python through ``PythonRunner``, which the REST API allows and
``spark-submit`` refuses on standalone), so the Airflow worker is free once the master accepted one.
``/json/`` of the master UI lists every driver in one request; driver logs come from the worker UIs.
What the master cannot do shapes the rest (docs/standalone.md tells it in full):

* no lookup by key — ``/json/`` lists drivers without their name, so the core's ledger maps keys;
* a master that is not ALIVE answers ``success: false`` for everything: transient, never "not found";
* a kill is only requested: until the worker stopped the driver it reports CANCELLING, in this process;
* the bearer token goes to the configured origins only, never to a worker UI the master advertises.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from yarl import URL

from airflow_spark_async.core.backend import Backend, JobState, JobStatus, credential_digest
from airflow_spark_async.core.errors import (
    ConfigurationError,
    ConnectionFailed,
    JobNotFoundError,
    RequestRejected,
    ServerError,
)
from airflow_spark_async.core.http import request_json
from airflow_spark_async.core.runtime import Runtime
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.standalone.hook import REST_HINT, StandaloneSettings

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["DRIVER_STATES", "StandaloneBackend", "build_create_request"]

#: Spark's ``DriverState`` → ours. RELAUNCHING means a supervised driver is being restarted;
#: UNKNOWN means the master is recovering — neither is an end.
DRIVER_STATES: dict[str, JobState] = {
    "SUBMITTED": JobState.PENDING,
    "UNKNOWN": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "RELAUNCHING": JobState.RUNNING,
    "FINISHED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "ERROR": JobState.FAILED,
    "KILLED": JobState.CANCELLED,
}
_EXPLAIN = {
    "FAILED": "the driver exited with a non-zero status",
    "ERROR": "the master could not run the driver (missing application file, bad jar …)",
    "KILLED": "the driver was killed",
}
PYTHON_RUNNER = "org.apache.spark.deploy.PythonRunner"
WORKERS_TTL = 30.0
#: what Master.scala answers while it is not ALIVE (Utils.BACKUP_STANDALONE_MASTER_PREFIX and the
#: "Can only … in ALIVE state." of submit, status and kill): a standby or recovering master
_NOT_ALIVE = ("Current state is not alive", "in ALIVE state")
#: kills requested by this process, (REST url, driver id) -> when; shared by every backend object of
#: the process (each event loop builds its own). Bounded: the oldest are dropped first.
_KILLS: collections.OrderedDict[tuple[str, str], float] = collections.OrderedDict()
MAX_REMEMBERED_KILLS = 10_000


def _not_alive(message: Any) -> bool:
    return isinstance(message, str) and any(marker in message for marker in _NOT_ALIVE)


def build_create_request(job: SparkJob, *, key: str, settings: StandaloneSettings) -> dict[str, Any]:
    """The ``CreateSubmissionRequest`` body for ``job``: spark-submit options as properties."""
    props = {
        "spark.app.name": f"{job.name or 'spark-job'} [{key}]",
        "spark.master": settings.master_url,
        "spark.submit.deployMode": "cluster",
        "spark.driver.supervise": "false",
        **job.spark_properties(exclude=("name",)),  # conf last: it wins, as with spark-submit
    }
    if job.is_python:
        main_class = PYTHON_RUNNER
        # PythonRunner: args(0) = the script, args(1) = comma-separated py-files, then the app's args
        app_args = [job.application, ",".join(job.py_files), *job.args]
    elif job.main_class:
        main_class, app_args = job.main_class, list(job.args)
    else:
        # The REST protocol has no "take it from the manifest": mainClass is mandatory.
        raise ConfigurationError(f"{job.application!r} is not a .py file: the standalone master needs main_class")
    return {
        "action": "CreateSubmissionRequest",
        "clientSparkVersion": settings.spark_version,
        "appResource": job.application,
        "mainClass": main_class,
        "appArgs": app_args,
        "sparkProperties": props,
        "environmentVariables": {"SPARK_ENV_LOADED": "1", **job.env},
    }


class StandaloneBackend(Backend[SparkJob]):
    """Jobs on a Spark standalone master, through its REST submission server."""

    name: ClassVar[str] = "standalone"
    supports_find_by_key: ClassVar[bool] = False

    def __init__(self, settings: StandaloneSettings) -> None:
        self.settings = settings
        #: the origins the connection names — the only ones that get its credentials
        self.origins = frozenset(str(URL(url).origin()) for url in (settings.rest_url, settings.ui_url))
        self._workers: dict[str, str] = {}  # worker id -> web UI URL
        self._workers_at = 0.0

    @classmethod
    async def from_connection(cls, conn: Connection, options: Mapping[str, Any]) -> StandaloneBackend:
        cls.validate_options(options)
        return cls(StandaloneSettings.from_connection(conn))

    @property
    def watch_key(self) -> str:
        return self.settings.rest_url

    def identity(self) -> str:
        """The REST endpoint and a digest of the credentials (never the token): two connections with
        different tokens never share a watcher."""
        return f"{self.settings.rest_url}|{credential_digest(self.settings.headers)}"

    async def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        origin = str(URL(url).origin())
        session = Runtime.current().session(origin, self.settings.http)
        # A worker's web UI is an address the master advertises, not one the user configured: it
        # never sees the bearer token (a compromised or spoofed worker would otherwise collect it).
        headers = self.settings.headers if origin in self.origins else {}
        return await request_json(session, method, url, headers=headers, **kwargs)

    async def _master(self, what: str, *, alive: bool = True) -> Mapping[str, Any]:
        """The master UI's ``/json/``, with ``alive`` only from an ALIVE master: a standby lists no
        drivers, a recovering one not all of them yet, so their silence is no news. Any master that
        answers names its workers, whose UIs serve driver logs."""
        state = await self._call("GET", f"{self.settings.ui_url}/json/")
        if isinstance(state, dict):
            self._workers_at = time.monotonic()
            self._workers = {
                str(w.get("id")): str(w.get("webuiaddress")).rstrip("/")
                for w in state.get("workers", [])
                if w.get("id") and w.get("webuiaddress")
            }
        elif alive:
            raise ServerError(f"{what}: {self.settings.ui_url}/json/ answered {str(state)[:200]!r}")
        if alive and state.get("status") != "ALIVE":
            raise ServerError(f"{what}: the Spark master is {state.get('status') or 'in an unknown state'}, not ALIVE")
        return state if isinstance(state, dict) else {}

    async def submit(self, job: SparkJob, *, key: str, attempt: int = 1) -> JobStatus:
        """``attempt`` is not needed: the master does not deduplicate, the core's ledger does."""
        body = build_create_request(job, key=key, settings=self.settings)
        async with self._rest_server():
            resp = await self._call("POST", f"{self.settings.rest_url}/v1/submissions/create", json_body=body)
        if not isinstance(resp, dict) or not resp.get("success") or not resp.get("submissionId"):
            message = resp.get("message") if isinstance(resp, dict) else resp
            if _not_alive(message):
                # Nothing was accepted: a standby/recovering master keeps no driver, so retrying is safe.
                raise ServerError(f"the Spark master is not ALIVE and accepts no submission now: {message}")
            raise RequestRejected(f"the Spark master refused the submission: {message}")
        job_id = str(resp["submissionId"])
        return JobStatus(job_id, JobState.PENDING, "SUBMITTED", message=resp.get("message"), links=self.links(job_id))

    async def status(self, job_id: str) -> JobStatus:
        resp = await self._call("GET", f"{self.settings.rest_url}/v1/submissions/status/{job_id}")
        if not isinstance(resp, dict):
            raise ServerError(f"status of {job_id}: unexpected answer {resp!r}")
        raw = resp.get("driverState")
        if not resp.get("success") or not raw:
            message = resp.get("message")
            if _not_alive(message):
                raise ServerError(f"the Spark master is not ALIVE, so it cannot say how driver {job_id} is: {message}")
            await self._master(f"status of driver {job_id}")  # only an ALIVE master's "unknown" is news
            raise JobNotFoundError(
                f"the Spark master does not know driver {job_id} (it may have been restarted, or the driver "
                f"was culled after spark.deploy.retainedDrivers): {message or 'no message'}"
            )
        links = self.links(job_id)
        if worker_ui := await self._worker_ui(resp.get("workerId")):
            links["driver_log"] = f"{worker_ui}/logPage/?driverId={job_id}&logType=stderr"
        return self._status(job_id, str(raw), resp.get("message"), links)

    def _status(self, job_id: str, raw: str, message: str | None, links: dict[str, str]) -> JobStatus:
        state = DRIVER_STATES.get(raw.upper(), JobState.PENDING)
        explanation = _EXPLAIN.get(raw.upper())
        remembered = (self.settings.rest_url, job_id)
        if state.is_terminal:
            _KILLS.pop(remembered, None)
        elif remembered in _KILLS:
            state = JobState.CANCELLING  # killed by us, not yet stopped by its worker
            explanation = f"a kill was requested {time.time() - _KILLS[remembered]:.0f}s ago and is in progress"
        text = "; ".join(p for p in (explanation, (message or "").strip() or None) if p) or None
        return JobStatus(job_id, state, raw, message=text, links=links)

    async def status_many(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        """Every listed driver of ``job_ids``; the core asks for the others one by one."""
        state = await self._master("listing drivers")
        wanted = set(job_ids)
        return {
            job_id: self._status(job_id, str(driver["state"]), None, self.links(job_id))
            for driver in [*state.get("activedrivers", []), *state.get("completeddrivers", [])]
            if (job_id := str(driver.get("id"))) in wanted and driver.get("state")
        }

    async def cancel(self, job_id: str, *, key: str | None = None) -> None:
        """Request the kill (asynchronous: the driver stays RUNNING until its worker stopped it, and
        reports CANCELLING here meanwhile). ``key`` is not needed: driver ids carry the master's
        start time, so a restarted master does not reuse them.

        ``success: false`` with "already finished or does not exist" leaves nothing to stop; with
        "not ALIVE" the kill did not happen — a :class:`ServerError`, so the caller tries again.
        """
        resp = await self._call("POST", f"{self.settings.rest_url}/v1/submissions/kill/{job_id}")
        message = resp.get("message") if isinstance(resp, dict) else None
        if isinstance(resp, dict) and resp.get("success"):
            _KILLS[(self.settings.rest_url, job_id)] = time.time()
            _KILLS.move_to_end((self.settings.rest_url, job_id))
            while len(_KILLS) > MAX_REMEMBERED_KILLS:
                _KILLS.popitem(last=False)
        elif _not_alive(message):
            raise ServerError(f"the Spark master is not ALIVE and did not kill driver {job_id}: {message}")

    async def logs(self, job_id: str, *, tail_lines: int) -> str | None:
        """Tails of the driver's ``stdout`` (a PySpark app's own output and traceback) and
        ``stderr`` (the driver JVM's log), read from the worker's web UI — without credentials."""
        resp = await self._call("GET", f"{self.settings.rest_url}/v1/submissions/status/{job_id}")
        worker_ui = await self._worker_ui(resp.get("workerId") if isinstance(resp, dict) else None)
        if not worker_ui:
            return None
        parts = []
        for log_type in ("stdout", "stderr"):
            params = {"driverId": job_id, "logType": log_type, "byteLength": 256 * 1024}
            text = await self._call("GET", f"{worker_ui}/log/", params=params, text=True, not_found_ok=True)
            lines = (text or "").splitlines()
            if lines and lines[0].startswith("==== Bytes"):
                lines = lines[1:]
            if lines:
                parts.append(f"----- driver {log_type} -----\n" + "\n".join(lines[-tail_lines:]))
        return "\n".join(parts) or None

    def links(self, job_id: str) -> dict[str, str]:
        return {"master_ui": self.settings.ui_url}

    async def probe(self) -> str:
        """The master's UI, then its REST submission server (asked for a driver that does not exist:
        any JSON answer proves it takes submissions)."""
        master = await self._master("testing the connection", alive=False)
        async with self._rest_server():
            answer = await self._call("GET", f"{self.settings.rest_url}/v1/submissions/status/connection-test")
        if not isinstance(answer, dict) or "action" not in answer:
            raise ServerError(f"{self.settings.rest_url} is not a Spark REST submission server: {str(answer)[:200]!r}")
        return (f"Spark master {master.get('url', self.settings.master_url)} is {master.get('status', 'UNKNOWN')} with "
                f"{len(master.get('workers', []))} worker(s); REST submissions at {self.settings.rest_url}")

    @contextlib.asynccontextmanager
    async def _rest_server(self) -> AsyncIterator[None]:
        """A REST server that does not answer is most often one that is off: say how to turn it on."""
        try:
            yield
        except ConnectionFailed as exc:
            raise ConnectionFailed(
                f"{exc} — the master's REST submission server does not answer at {self.settings.rest_url}. {REST_HINT}"
            ) from exc

    async def _worker_ui(self, worker_id: Any) -> str | None:
        if not worker_id:
            return None
        if str(worker_id) not in self._workers and time.monotonic() - self._workers_at > WORKERS_TTL:
            await self._master(f"the UI of worker {worker_id}", alive=False)
        return self._workers.get(str(worker_id))
