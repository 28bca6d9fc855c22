"""Spark standalone backend: the master's REST submission API plus its web UI's JSON.

Submissions go in cluster mode, so the driver runs on a worker of the cluster and the
Airflow worker is free as soon as the master accepted it. Python applications go through
``org.apache.spark.deploy.PythonRunner`` (``spark-submit`` refuses cluster mode for
Python on standalone; the REST API does not).

Coalesced polling reads the master UI's ``/json/``, which lists every active and
completed driver in one request. The driver's stderr is read from the worker's web UI (``/log``).

What this backend can and cannot know (docs/standalone.md has the whole story):

* **No lookup by key.** The key travels in ``spark.app.name`` (``name [key]``), but ``/json/``
  lists drivers without a name and applications without their driver (checked on Spark 4.3: a
  driver has id, starttime, state, cores, memory, submitdate, worker, mainclass), and a driver
  that has not created its SparkContext yet has no application at all. So the core keeps
  ``key -> driver id`` in its Airflow-side ledger, with the intent written before the submission
  (``supports_find_by_key`` is false).
* **Master not ALIVE is transient.** A STANDBY or RECOVERING master answers HTTP 200 with
  ``success: false`` and ``Current state is not alive: … Can only … in ALIVE state.``; that is a
  :class:`ServerError` (retry), never :class:`JobNotFoundError`. Only an ALIVE master that does
  not know a driver id makes it ``JobNotFoundError``.
* **Kills in progress.** ``POST /v1/submissions/kill`` only *requests* a kill; the driver reports
  RUNNING until its worker has stopped it. Kills this process requested are remembered, and such a
  driver reports :attr:`JobState.CANCELLING` until it ends — in this process only.
* **Credentials stay home.** The bearer token goes to the configured REST and master UI origins
  only, never to the worker web UIs the master advertises (they are read for driver logs).
"""

from __future__ import annotations

import collections
import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from yarl import URL

from airflow_spark_async.core.backend import Backend, JobStatus
from airflow_spark_async.core.errors import ConfigurationError, JobNotFoundError, RequestRejected, ServerError
from airflow_spark_async.core.http import get_session, request_json
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.core.states import JobState
from airflow_spark_async.standalone.hook import StandaloneSettings

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
#: the process, because the worker builds a backend per call. Bounded: the oldest are dropped first.
_KILLS: collections.OrderedDict[tuple[str, str], float] = collections.OrderedDict()
MAX_REMEMBERED_KILLS = 10_000


def _not_alive(message: Any) -> bool:
    return isinstance(message, str) and any(marker in message for marker in _NOT_ALIVE)


def build_create_request(job: SparkJob, *, key: str, settings: StandaloneSettings) -> dict[str, Any]:
    """The ``CreateSubmissionRequest`` body for ``job``: spark-submit options as properties."""
    props: dict[str, str] = {
        "spark.app.name": f"{job.name or 'spark-job'} [{key}]",
        "spark.master": settings.master_url,
        "spark.submit.deployMode": "cluster",
        "spark.driver.supervise": "false",
    }
    for field, prop in (
        ("jars", "spark.jars"),
        ("files", "spark.files"),
        ("archives", "spark.archives"),
        ("packages", "spark.jars.packages"),
        ("py_files", "spark.submit.pyFiles"),
    ):
        if values := getattr(job, field):
            props[prop] = ",".join(values)
    props.update(job.resource_properties())
    props.update(job.conf)
    if job.is_python:
        main_class = PYTHON_RUNNER
        # PythonRunner: args(0) = the script, args(1) = comma-separated py-files, then the app's args
        app_args = [job.application, ",".join(job.py_files), *job.args]
    elif job.main_class:
        main_class = job.main_class
        app_args = list(job.args)
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


class StandaloneBackend(Backend):
    """Jobs on a Spark standalone master, through its REST submission server."""

    name: ClassVar[str] = "standalone"
    supports_find_by_key: ClassVar[bool] = False

    def __init__(self, settings: StandaloneSettings) -> None:
        self.settings = settings
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
        """The REST endpoint and the first 12 hex digits of a SHA-256 digest of the credentials
        (never the token): two connections with different tokens never share a watcher."""
        digest = hashlib.sha256(repr(sorted(self.settings.headers.items())).encode()).hexdigest()[:12]
        return f"{self.settings.rest_url}|{digest}"

    def _origins(self) -> frozenset[str]:
        """The origins the connection names — the only ones that get its credentials."""
        return frozenset(str(URL(url).origin()) for url in (self.settings.rest_url, self.settings.ui_url))

    async def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        origin = str(URL(url).origin())
        session = get_session(origin, verify_ssl=self.settings.verify_ssl)
        # A worker's web UI is an address the master advertises, not one the user configured: it
        # never sees the bearer token (a compromised or spoofed worker would otherwise collect it).
        headers = self.settings.headers if origin in self._origins() else {}
        return await request_json(session, method, url, headers=headers, **kwargs)

    async def submit(self, job: SparkJob, *, key: str) -> JobStatus:
        body = build_create_request(job, key=key, settings=self.settings)
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
            await self._require_alive(f"status of driver {job_id}")
            raise JobNotFoundError(
                f"the Spark master does not know driver {job_id} (it may have been restarted, or the driver "
                f"was culled after spark.deploy.retainedDrivers): {message or 'no message'}"
            )
        links = self.links(job_id)
        if worker_ui := await self._worker_ui(resp.get("workerId")):
            links["driver_log"] = f"{worker_ui}/logPage/?driverId={job_id}&logType=stderr"
        return self._status(job_id, str(raw), resp.get("message"), links)

    async def _require_alive(self, what: str) -> None:
        """An unknown driver is only *known* to be unknown by an ALIVE master: a master that has just
        become leader, or is recovering, answers ``success: false`` for drivers it will know soon."""
        state = await self._call("GET", f"{self.settings.ui_url}/json/")
        if not isinstance(state, dict):
            raise ServerError(f"{self.settings.ui_url}/json/ answered {str(state)[:200]!r}")
        if state.get("status") != "ALIVE":
            raise ServerError(f"{what}: the Spark master is {state.get('status') or 'in an unknown state'}, not ALIVE")

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
        state = await self._call("GET", f"{self.settings.ui_url}/json/")
        if not isinstance(state, dict):
            raise ServerError(f"{self.settings.ui_url}/json/ answered {state!r}")
        if state.get("status", "ALIVE") != "ALIVE":
            # A standby or recovering master lists no drivers (or not all yet): its silence is no news.
            raise ServerError(f"{self.settings.ui_url}/json/: the Spark master is {state.get('status')}, not ALIVE")
        self._remember_workers(state)
        wanted = set(job_ids)
        found: dict[str, JobStatus] = {}
        for driver in [*state.get("activedrivers", []), *state.get("completeddrivers", [])]:
            job_id = str(driver.get("id"))
            if job_id in wanted and driver.get("state"):
                found[job_id] = self._status(job_id, str(driver["state"]), None, self.links(job_id))
        return found

    async def cancel(self, job_id: str, *, key: str | None = None) -> None:
        """Request the kill (asynchronous: the driver stays RUNNING until its worker stopped it, and
        reports CANCELLING here meanwhile). ``key`` is accepted for the core's sake and not needed:
        driver ids carry the master's start time, so a restarted master does not reuse them.

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
            text = await self._call(
                "GET",
                f"{worker_ui}/log/",
                params={"driverId": job_id, "logType": log_type, "byteLength": 256 * 1024},
                text=True,
                not_found_ok=True,
            )
            lines = (text or "").splitlines()
            if lines and lines[0].startswith("==== Bytes"):
                lines = lines[1:]
            if lines:
                parts.append(f"----- driver {log_type} -----\n" + "\n".join(lines[-tail_lines:]))
        return "\n".join(parts) or None

    def links(self, job_id: str) -> dict[str, str]:
        return {"master_ui": self.settings.ui_url}

    async def _worker_ui(self, worker_id: Any) -> str | None:
        if not worker_id:
            return None
        if worker_id not in self._workers and time.monotonic() - self._workers_at > WORKERS_TTL:
            state = await self._call("GET", f"{self.settings.ui_url}/json/")
            if isinstance(state, dict):
                self._remember_workers(state)
        return self._workers.get(str(worker_id))

    def _remember_workers(self, state: Mapping[str, Any]) -> None:
        self._workers = {
            str(w.get("id")): str(w.get("webuiaddress")).rstrip("/")
            for w in state.get("workers", [])
            if w.get("id") and w.get("webuiaddress")
        }
        self._workers_at = time.monotonic()
