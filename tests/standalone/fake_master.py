"""A Spark standalone master for the states a real local cluster will not show on demand: a master
that is not ALIVE (STANDBY, RECOVERING), a kill that has been requested but not carried out yet,
and a worker web UI that records what it is sent.

Written from Spark's Master.scala and StandaloneRestServer.scala (summarised in
/work/shared/reference/spark-standalone-rest.md), answering as they do:

* REST (``/v1/submissions/...``): business failures are HTTP 200 with ``success: false``. While
  the master is not ALIVE, create answers ``Current state is not alive: <STATE>. Can only accept
  driver submissions in ALIVE state.``, kill ``… Can only kill drivers in ALIVE state.`` and status
  carries the exception as ``Exception from the cluster:\\njava.lang.Exception: … Can only request
  driver status in ALIVE state.``; an unknown driver's status is ``success: false`` with *no*
  message; ``readyz`` is 503 ``Master is not ready.`` in STANDBY.
* UI (``/json/``): ``status`` and the workers, drivers as the real master lists them; a master that
  is not ALIVE lists no drivers (a standby knows none, a recovering one not yet).
* Worker UI (``/log/``): the driver's log, with the ``==== Bytes …`` heading; every request's
  headers are kept in :attr:`FakeWorkerUI.headers`.

A kill of a RUNNING driver only marks it; :meth:`FakeMaster.finish_kill` is the worker reporting
KILLED — so a test controls exactly how long a kill is in progress.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.servers.background import BackgroundServer, ThreadedServer

__all__ = ["FakeMaster", "FakeWorkerUI"]

SPARK_VERSION = "4.0.0"
NOT_ALIVE = "Current state is not alive: {state}. Can only {what} in ALIVE state."


class FakeWorkerUI(BackgroundServer):
    """A worker web UI serving driver logs; records the headers of every request."""

    def __init__(self) -> None:
        super().__init__(thread_name="fake-worker-ui")
        self.headers: list[dict[str, str]] = []
        self.logs: dict[tuple[str, str], str] = {}

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/log/", self._log)
        return app

    async def _log(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        text = self.logs.get((request.query.get("driverId", ""), request.query.get("logType", "")), "")
        return web.Response(text=f"==== Bytes 0-{len(text)} of {len(text)} of log ====\n{text}")


class FakeMaster(ThreadedServer):
    """Start with ``with FakeMaster() as master:``; ``rest_url`` (also ``origin``) and ``ui_url`` are
    its two origins, each served by a server of its own.

    :param worker_ui: the worker web UI this master advertises in ``/json/``.
    """

    def __init__(self, worker_ui: str = "http://127.0.0.1:1") -> None:
        self._rest = BackgroundServer(app=self._rest_app, thread_name="fake-master-rest")
        self._ui = BackgroundServer(app=self._ui_app, thread_name="fake-master-ui")
        super().__init__(port=self._rest.port)
        self.rest_url = self._rest.origin
        self.ui_url = self._ui.origin
        self.state = "ALIVE"
        self.worker_ui = worker_ui
        self.worker_id = "worker-20260101000000-127.0.0.1-7078"
        #: driver id -> DriverState
        self.drivers: dict[str, str] = {}
        #: driver ids whose kill was requested and not yet carried out
        self.kill_requested: set[str] = set()
        #: when set, an ALIVE master refuses submissions with this message (a malformed request)
        self.refuse_submissions: str | None = None
        #: (method, path, headers) of every request, REST and UI alike
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._counter = 0

    def start(self) -> None:
        self._rest.start()
        self._ui.start()

    def stop(self) -> None:
        self._ui.stop()
        self._rest.stop()

    # -- control from the test ---------------------------------------------------------------

    def add_driver(self, state: str = "RUNNING") -> str:
        with self._lock:
            driver_id = f"driver-20260101000000-{self._counter:04d}"
            self._counter += 1
            self.drivers[driver_id] = state
        return driver_id

    def finish_kill(self, driver_id: str) -> None:
        """The worker stopped the driver and reported it: KILLED."""
        with self._lock:
            self.kill_requested.discard(driver_id)
            self.drivers[driver_id] = "KILLED"

    # -- REST ----------------------------------------------------------------------------------

    def _rest_app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/v1/submissions/create", self._create)
        app.router.add_get("/v1/submissions/status/{id}", self._status)
        app.router.add_post("/v1/submissions/kill/{id}", self._kill)
        app.router.add_get("/v1/submissions/readyz", self._readyz)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        with self._lock:
            self.requests.append((request.method, request.path_qs, dict(request.headers)))
        return await handler(request)

    @staticmethod
    def _answer(action: str, **fields: Any) -> web.Response:
        body = {"action": action, "serverSparkVersion": SPARK_VERSION}
        body.update({k: v for k, v in fields.items() if v is not None})  # nulls are omitted
        return web.json_response(body)

    async def _create(self, request: web.Request) -> web.Response:
        await request.read()
        if self.state != "ALIVE":
            return self._answer("CreateSubmissionResponse", success=False,
                                message=NOT_ALIVE.format(state=self.state, what="accept driver submissions"))
        if self.refuse_submissions:
            return self._answer("CreateSubmissionResponse", success=False, message=self.refuse_submissions)
        driver_id = self.add_driver("SUBMITTED")
        return self._answer("CreateSubmissionResponse", success=True, submissionId=driver_id,
                            message=f"Driver successfully submitted as {driver_id}")

    async def _status(self, request: web.Request) -> web.Response:
        driver_id = request.match_info["id"]
        if self.state != "ALIVE":
            exc = "java.lang.Exception: " + NOT_ALIVE.format(state=self.state, what="request driver status")
            return self._answer("SubmissionStatusResponse", success=False, submissionId=driver_id,
                                message=f"Exception from the cluster:\n{exc}\n\tat org.apache.spark.deploy.master")
        state = self.drivers.get(driver_id)
        if state is None:
            return self._answer("SubmissionStatusResponse", success=False, submissionId=driver_id)
        return self._answer("SubmissionStatusResponse", success=True, submissionId=driver_id, driverState=state,
                            workerId=self.worker_id, workerHostPort="127.0.0.1:7078")

    async def _kill(self, request: web.Request) -> web.Response:
        driver_id = request.match_info["id"]
        if self.state != "ALIVE":
            return self._answer("KillSubmissionResponse", success=False, submissionId=driver_id,
                                message=NOT_ALIVE.format(state=self.state, what="kill drivers"))
        with self._lock:
            state = self.drivers.get(driver_id)
            if state in ("SUBMITTED", "RUNNING", "RELAUNCHING"):
                self.kill_requested.add(driver_id)  # sent to the worker; the driver still runs
                return self._answer("KillSubmissionResponse", success=True, submissionId=driver_id,
                                    message=f"Kill request for {driver_id} submitted")
        return self._answer("KillSubmissionResponse", success=False, submissionId=driver_id,
                            message=f"Driver {driver_id} has already finished or does not exist")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.state == "STANDBY":
            return web.json_response({"action": "ErrorResponse", "message": "Master is not ready.",
                                      "serverSparkVersion": SPARK_VERSION}, status=503)
        return self._answer("ReadyzResponse", success=True, message="")

    # -- UI --------------------------------------------------------------------------------------

    def _ui_app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/json/", self._json)
        return app

    async def _json(self, request: web.Request) -> web.Response:
        alive = self.state == "ALIVE"
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y")

        def driver(driver_id: str, state: str) -> dict[str, Any]:
            return {"id": driver_id, "starttime": "1767225600000", "state": state, "cores": 1, "memory": 1024,
                    "resources": {}, "submitdate": now, "worker": self.worker_id,
                    "mainclass": "org.apache.spark.deploy.PythonRunner"}

        with self._lock:
            drivers = dict(self.drivers) if alive else {}
        ended = {"FINISHED", "FAILED", "KILLED", "ERROR"}
        return web.json_response({
            "url": "spark://127.0.0.1:7077",
            "status": self.state,
            "workers": [{"id": self.worker_id, "host": "127.0.0.1", "port": 7078, "webuiaddress": self.worker_ui,
                         "state": "ALIVE"}] if alive else [],
            "activedrivers": [driver(i, s) for i, s in drivers.items() if s not in ended],
            "completeddrivers": [driver(i, s) for i, s in drivers.items() if s in ended],
            "activeapps": [],
            "completedapps": [],
        })
