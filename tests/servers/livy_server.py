"""An Apache Livy REST server for tests, written from Livy's REST API docs and server code.

Sources: Livy's docs/rest-api.md and its server (SessionServlet, BatchSessionServlet,
CreateBatchRequest, BatchSession, SparkProcApp, SessionManager, CsrfFilter), summarised in
/work/shared/reference/livy.md. What it serves, as Livy does:

* ``POST /batches`` — 201, the Batch object, ``Location: /<id>``; unknown JSON fields → 400 (a bare
  JSON string, as Jackson's errors are); a duplicate live ``name`` → 400 ``Rejected, Reason:
  Duplicate session name: Some(<name>) for session <id>`` (the id is consumed); a missing ``file`` →
  400 ``requirement failed: File is required.`` and, like Livy, a stray batch left in ``starting``.
* ``GET /batches?from=&size=`` — ``{"from", "total", "sessions"}`` in creation order, ``total`` = all.
* ``GET /batches/{id}`` (a non-numeric ``{id}`` is looked up as a batch *name*), ``/state``,
  ``/log?from=&size=`` (Livy's paging: ``size`` default 100, ``from`` default = the tail), and
  ``DELETE /batches/{id}`` — 200 ``{"msg": "deleted"}``, the application killed, then 404.
* Unknown ids → 404 ``{"msg": "Session '<id>' not found."}``; finished batches are forgotten after
  ``state_retain`` seconds (``livy.server.session.state-retain.sec``) → 404, their names freed.
  Livy's own collector (SessionManager.collectGarbage) runs once a minute; here it runs before every
  request (the strictest schedule Livy can show), and :meth:`LivyServer.collect_garbage` runs it on
  demand with any retention, so a test need not sleep through one.
* Optional HTTP Basic or bearer authentication (401 + ``WWW-Authenticate``), CSRF protection
  (``X-Requested-By`` required on POST/DELETE), and a path prefix, as behind a Knox gateway.
* :meth:`LivyServer.restart` forgets every batch and restarts ids at 0: Livy without recovery.

How batches run:

* **Real PySpark** (``spark_master`` given): like Livy on a non-YARN master (SparkProcApp), one
  ``spark-submit`` child process per batch in client mode against the local standalone cluster; the
  batch log is its output (``stdout: `` … ``\\nstderr: ``), the state ``running`` as soon as the
  process started, ``success`` on exit 0, ``dead`` otherwise; ``appId`` and ``appInfo.sparkUiUrl``
  are read from the driver's log, as YARN would report them.
* **Scripted** (:meth:`LivyServer.script`): a sequence of states with durations and log lines, for
  the states real Spark rarely shows (``recovering``, ``error``, ``killed`` by the cluster …).

Transport faults (429 with Retry-After, 5xx, malformed bodies, slow answers, resets) come from the
fault proxy put in front of this server (``tests/servers/fault_proxy.py``).

Run it alone: ``python -m tests.servers.livy_server --port 8998 [--spark-master spark://127.0.0.1:7077]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import hmac
import json
import os
import re
import signal
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.servers.background import BackgroundServer

__all__ = ["CREATE_FIELDS", "TERMINAL", "LivyServer", "Step"]

#: CreateBatchRequest's properties; anything else is an UnrecognizedPropertyException (400).
CREATE_FIELDS = {
    "file": str,
    "proxyUser": str,
    "className": str,
    "args": list,
    "jars": list,
    "pyFiles": list,
    "files": list,
    "driverMemory": str,
    "driverCores": int,
    "executorMemory": str,
    "executorCores": int,
    "numExecutors": int,
    "archives": list,
    "queue": str,
    "name": str,
    "conf": dict,
}
TERMINAL = frozenset({"success", "dead", "killed", "error"})
#: spark-defaults of this "Livy host": small, so that several batches share the local cluster.
SPARK_DEFAULTS = {
    "spark.cores.max": "1",
    "spark.executor.memory": "512m",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}
_APP_ID = re.compile(r"\b(app-\d{14}-\d{4}|application_\d+_\d+)\b")
_SPARK_UI = re.compile(r"SparkUI.*?(https?://[^\s,]+)")


@dataclasses.dataclass(frozen=True)
class Step:
    """One state of a scripted batch: held ``seconds`` (the last step is held for ever), with
    ``log`` lines appended when it begins. ``running`` assigns an application id and appInfo."""

    state: str
    seconds: float = 0.0
    log: Sequence[str] = ()


DEFAULT_SCRIPT = (Step("starting", 0.5), Step("running", 1.0, ("running the application",)), Step("success"))


@dataclasses.dataclass
class _Batch:
    id: int
    name: str | None
    owner: str | None
    proxy_user: str | None
    request: dict[str, Any]
    state: str = "starting"
    app_id: str | None = None
    app_info: dict[str, str | None] = dataclasses.field(
        default_factory=lambda: {"driverLogUrl": None, "sparkUiUrl": None, "executorLogUrls": None}
    )
    lines: list[str] = dataclasses.field(default_factory=list)
    finished_at: float | None = None
    task: asyncio.Task[None] | None = None
    process: asyncio.subprocess.Process | None = None

    def log(self) -> list[str]:
        """SparkProcApp.log(): the process output between a ``stdout: `` and a ``\\nstderr: `` heading."""
        return ["stdout: ", *self.lines, "\nstderr: "]

    def view(self) -> dict[str, Any]:
        """BatchSessionView: the Batch object, with the last 10 log lines."""
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "proxyUser": self.proxy_user,
            "state": self.state,
            "appId": self.app_id,
            "appInfo": dict(self.app_info),
            "log": self.log()[-10:],
        }

    def finish(self, state: str) -> None:
        if self.state not in TERMINAL:
            self.state = state
            self.finished_at = time.time()


def _msg(text: str, status: int) -> web.Response:
    return web.json_response({"msg": text}, status=status)


def _error_page(status: int, reason: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """What Jetty answers for errors raised by servlet filters (auth, CSRF): an HTML page."""
    body = f"<html><head><title>Error {status} {reason}</title></head><body><h2>HTTP ERROR {status}</h2>" \
           f"<p>{reason}</p></body></html>"
    return web.Response(status=status, text=body, content_type="text/html", headers=headers)


class LivyServer(BackgroundServer):
    """Start with ``with LivyServer(...) as livy:``; clients use ``livy.origin`` + ``livy.prefix``.

    :param spark_master: run batches as real applications on this standalone master; ``None``
        runs every batch from a script (``default_script`` unless :meth:`script` says otherwise).
    :param auth: ``("basic", user, password)`` or ``("bearer", token)``; ``None`` is Livy's default.
    :param csrf: require ``X-Requested-By`` on POST and DELETE (``livy.server.csrf-protection.enabled``).
    :param prefix: serve under this path, as a Knox gateway would (``/gateway/default/livy/v1``).
    :param state_retain: seconds a finished batch stays listed before Livy forgets it.
    """

    def __init__(
        self,
        *,
        spark_master: str | None = None,
        spark_home: str | Path | None = None,
        python: str = sys.executable,
        auth: tuple[str, ...] | None = None,
        csrf: bool = False,
        prefix: str = "",
        state_retain: float = 600.0,
        default_script: Sequence[Step] = DEFAULT_SCRIPT,
        spark_conf: Mapping[str, str] | None = None,
        port: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.spark_master = spark_master
        self.spark_home = Path(spark_home) if spark_home else _pyspark_home() if spark_master else None
        self.python = python
        self.auth = auth
        self.csrf = csrf
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.state_retain = state_retain
        self.default_script = tuple(default_script)
        self.spark_conf = {**SPARK_DEFAULTS, **(spark_conf or {})}
        super().__init__(port=port, ssl_context=ssl_context, thread_name="livy-test-server")
        #: every request as (method, path with query), for tests to count, and its headers
        self.requests: list[tuple[str, str]] = []
        self.request_headers: list[dict[str, str]] = []
        #: every POST /batches body, as received
        self.posts: list[dict[str, Any]] = []
        #: ids removed by DELETE → the state they were in
        self.deleted: dict[int, str] = {}
        self._batches: dict[int, _Batch] = {}
        self._next_id = 0
        self._scripts: list[tuple[re.Pattern[str] | None, tuple[Step, ...]]] = []
        self._conf_dir = tempfile.mkdtemp(prefix="livy-test-spark-conf-")

    @property
    def url(self) -> str:
        """Where ``/batches`` lives."""
        return self.origin + self.prefix

    # -- control from the test --------------------------------------------------------------

    def script(self, *steps: Step, file: str | None = None) -> None:
        """Run the next submitted batch — or every batch whose ``file`` matches the regex ``file`` —
        through ``steps`` instead of the default."""
        with self._lock:
            self._scripts.append((re.compile(file) if file else None, tuple(steps)))

    def batch_state(self, batch_id: int | str) -> str:
        """The state Livy holds for a batch; ``deleted`` after a DELETE, ``unknown`` if never known."""
        batch_id = int(batch_id)
        with self._lock:
            if batch_id in self._batches:
                return self._batches[batch_id].state
            if batch_id in self.deleted:
                return "deleted"
        return "unknown"

    def batches(self) -> list[dict[str, Any]]:
        """Snapshot of every batch Livy holds, as Batch objects plus the request that made them."""
        with self._lock:
            return [{**b.view(), "request": dict(b.request)} for b in self._batches.values()]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()
            self.request_headers.clear()
            self.posts.clear()

    def collect_garbage(self, retain: float | None = None) -> list[int]:
        """Run Livy's collector now: forget every batch that ended more than ``retain`` seconds ago
        (default ``state_retain``; ``0`` forgets every ended batch). Returns the ids forgotten."""
        return self._collect_garbage(self.state_retain if retain is None else retain)

    def restart(self) -> None:
        """Livy restarted without session recovery: batches forgotten, ids from 0 again."""
        self._call(self._restart())

    def stop_all(self) -> None:
        """Kill every running batch (end of a test module)."""
        self._call(self._kill_all())

    # -- serving ----------------------------------------------------------------------------------

    async def on_stop(self) -> None:
        with contextlib.suppress(Exception):
            await self._kill_all()

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        p = self.prefix
        app.router.add_post(f"{p}/batches", self._create)
        app.router.add_get(f"{p}/batches", self._list)
        app.router.add_get(f"{p}/batches/{{id}}", self._get)
        app.router.add_get(f"{p}/batches/{{id}}/state", self._state)
        app.router.add_get(f"{p}/batches/{{id}}/log", self._log)
        app.router.add_delete(f"{p}/batches/{{id}}", self._delete)
        app.router.add_get(f"{p}/ui/batch/{{id}}/log", self._ui_log)
        return app

    # -- cross-cutting: record, authenticate, CSRF, garbage-collect ------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        with self._lock:
            self.requests.append((request.method, request.path_qs))
            self.request_headers.append(dict(request.headers))
        self._collect_garbage()
        if self.auth and not self._authenticated(request):
            scheme = "Basic realm=\"livy\"" if self.auth[0] == "basic" else "Bearer"
            return _error_page(401, "Unauthorized", {"WWW-Authenticate": scheme})
        if self.csrf and request.method not in ("GET", "HEAD", "OPTIONS") and "X-Requested-By" not in request.headers:
            return _error_page(400, "Missing Required Header for CSRF protection.")
        return await handler(request)

    def _authenticated(self, request: web.Request) -> bool:
        assert self.auth is not None
        given = request.headers.get("Authorization", "")
        if self.auth[0] == "basic":
            expected = "Basic " + base64.b64encode(f"{self.auth[1]}:{self.auth[2]}".encode()).decode()
        else:
            expected = f"Bearer {self.auth[1]}"
        return hmac.compare_digest(given, expected)

    def _owner(self, request: web.Request) -> str | None:
        return self.auth[1] if self.auth and self.auth[0] == "basic" else None

    def _collect_garbage(self, retain: float | None = None) -> list[int]:
        """SessionManager.collectGarbage for batches: an ended batch older than the retention is
        deleted (its name freed); a live batch is never collected."""
        retain = self.state_retain if retain is None else retain
        now = time.time()
        forgotten = []
        with self._lock:
            for batch_id, batch in list(self._batches.items()):
                if batch.finished_at is not None and now - batch.finished_at >= retain:
                    del self._batches[batch_id]
                    forgotten.append(batch_id)
        return forgotten

    def _find(self, request: web.Request) -> _Batch | None:
        key = request.match_info["id"]
        with self._lock:
            if key.isdigit():
                return self._batches.get(int(key))
            return next((b for b in self._batches.values() if b.name == key), None)

    @staticmethod
    def _not_found(request: web.Request) -> web.Response:
        return _msg(f"Session '{request.match_info['id']}' not found.", 404)

    # -- endpoints ----------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text())
        except ValueError as exc:
            return web.json_response(f"Unexpected character in JSON: {exc}", status=400)
        if not isinstance(body, dict):
            return web.json_response("Can not deserialize instance of CreateBatchRequest", status=400)
        for field, value in body.items():
            if field not in CREATE_FIELDS:
                return web.json_response(
                    f'Unrecognized field "{field}" (class org.apache.livy.server.batch.CreateBatchRequest), '
                    "not marked as ignorable",
                    status=400,
                )
            if value is not None and not isinstance(value, CREATE_FIELDS[field]):
                return web.json_response(f"Can not deserialize value of field {field!r}", status=400)
        with self._lock:
            self.posts.append(body)
            batch_id = self._next_id
            self._next_id += 1
            name = body.get("name")
            holder = next((b for b in self._batches.values() if name and b.name == name), None)
            if holder is not None:
                return _msg(f"Rejected, Reason: Duplicate session name: Some({name}) for session {batch_id}", 400)
            proxy_user = request.query.get("doAs") or body.get("proxyUser")
            batch = _Batch(batch_id, name, self._owner(request), proxy_user, body)
            self._batches[batch_id] = batch  # registered before start(), as SessionManager does
        if not body.get("file"):
            # Livy's quirk: start() fails after registration, the batch stays listed in "starting".
            return _msg("requirement failed: File is required.", 400)
        steps = self._script_for(str(body["file"]))
        if steps is None and self.spark_master:
            batch.task = asyncio.create_task(self._run_spark(batch))
        else:
            batch.task = asyncio.create_task(self._run_script(batch, steps or self.default_script))
        return web.json_response(batch.view(), status=201, headers={"Location": f"/{batch_id}"})

    def _script_for(self, file: str) -> tuple[Step, ...] | None:
        with self._lock:
            for i, (pattern, steps) in enumerate(self._scripts):
                if pattern is None:
                    del self._scripts[i]
                    return steps
                if pattern.search(file):
                    return steps
        return None

    async def _list(self, request: web.Request) -> web.Response:
        start = int(request.query.get("from", 0))
        size = int(request.query.get("size", 100))
        with self._lock:
            batches = list(self._batches.values())
        return web.json_response(
            {"from": start, "total": len(batches), "sessions": [b.view() for b in batches[start : start + size]]}
        )

    async def _get(self, request: web.Request) -> web.Response:
        batch = self._find(request)
        return web.json_response(batch.view()) if batch else self._not_found(request)

    async def _state(self, request: web.Request) -> web.Response:
        batch = self._find(request)
        return web.json_response({"id": batch.id, "state": batch.state}) if batch else self._not_found(request)

    async def _log(self, request: web.Request) -> web.Response:
        batch = self._find(request)
        if batch is None:
            return self._not_found(request)
        lines = batch.log()
        size = int(request.query.get("size", 100))
        start = int(request.query.get("from", -1))
        if size < 0:
            size = len(lines)
        if start < 0:
            start = max(0, len(lines) - size)
        page = lines[start : start + size]
        return web.json_response({"id": batch.id, "from": start, "total": len(lines), "log": page})

    async def _delete(self, request: web.Request) -> web.Response:
        batch = self._find(request)
        if batch is None:
            return self._not_found(request)
        await self._kill(batch)
        with self._lock:
            self._batches.pop(batch.id, None)
            self.deleted[batch.id] = batch.state
        return _msg("deleted", 200)

    async def _ui_log(self, request: web.Request) -> web.Response:
        batch = self._find(request)
        if batch is None:
            return _error_page(404, "No Such Page")
        text = "\n".join(batch.log()).replace("&", "&amp;").replace("<", "&lt;")
        return web.Response(text=f"<html><body><h3>Batch {batch.id} Log</h3><pre>{text}</pre></body></html>",
                            content_type="text/html")

    # -- running batches ---------------------------------------------------------------------------

    async def _run_script(self, batch: _Batch, steps: Iterable[Step]) -> None:
        for step in steps:
            batch.lines.extend(step.log)
            if step.state in ("running", "busy", "idle") and batch.app_id is None:
                batch.app_id = f"application_{int(time.time())}_{batch.id:04d}"
                batch.app_info.update(
                    sparkUiUrl=f"http://127.0.0.1:8088/proxy/{batch.app_id}/",
                    driverLogUrl=f"http://127.0.0.1:8042/node/containerlogs/container_{batch.app_id}_01/livy",
                )
            if step.state in TERMINAL:
                batch.finish(step.state)
                return
            batch.state = step.state
            if step.seconds:
                await asyncio.sleep(step.seconds)
        await asyncio.Event().wait()  # the last step is held until a DELETE

    async def _run_spark(self, batch: _Batch) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self._spark_submit_argv(batch),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self._spark_env(),
            start_new_session=True,  # its own process group: DELETE kills the Python driver too
        )
        batch.process = proc
        batch.state = "running"  # SparkProcApp: RUNNING as soon as the process is there
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            batch.lines.append(line)
            if batch.app_id is None and (found := _APP_ID.search(line)):
                batch.app_id = found.group(1)
            if batch.app_info.get("sparkUiUrl") is None and (ui := _SPARK_UI.search(line)):
                batch.app_info["sparkUiUrl"] = ui.group(1)
        code = await proc.wait()
        batch.finish("success" if code == 0 else "dead")

    def _spark_submit_argv(self, batch: _Batch) -> list[str]:
        req = batch.request
        assert self.spark_home is not None and self.spark_master is not None
        conf = dict(self.spark_conf)
        # Batch fields spark-submit's client mode on a standalone master has no flag for, as Spark conf.
        for field, key in (("numExecutors", "spark.executor.instances"), ("queue", "spark.yarn.queue"),
                           ("executorCores", "spark.executor.cores"), ("executorMemory", "spark.executor.memory")):
            if req.get(field):
                conf[key] = str(req[field])
        conf.update({str(k): str(v) for k, v in (req.get("conf") or {}).items()})
        argv = [str(self.spark_home / "bin" / "spark-submit"), "--master", self.spark_master, "--deploy-mode", "client"]
        argv += ["--name", str(batch.name or f"livy-batch-{batch.id}")]
        for key, value in conf.items():
            argv += ["--conf", f"{key}={value}"]
        argv += ["--driver-memory", str(req.get("driverMemory") or "512m")]
        if req.get("className"):
            argv += ["--class", req["className"]]
        for field, flag in (("jars", "--jars"), ("pyFiles", "--py-files"), ("files", "--files"),
                            ("archives", "--archives")):
            if req.get(field):
                argv += [flag, ",".join(map(str, req[field]))]
        return [*argv, str(req["file"]), *(str(a) for a in req.get("args") or [])]

    def _spark_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
        env.update(
            SPARK_HOME=str(self.spark_home),
            SPARK_CONF_DIR=self._conf_dir,
            SPARK_LOCAL_IP="127.0.0.1",
            PYSPARK_PYTHON=self.python,
            PYSPARK_DRIVER_PYTHON=self.python,
        )
        return env

    async def _kill(self, batch: _Batch) -> None:
        if batch.state in TERMINAL:
            return
        batch.finish("killed")
        if batch.process is not None and batch.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(batch.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(batch.process.wait(), 10)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(batch.process.pid, signal.SIGKILL)
        if batch.task is not None and not batch.task.done():
            batch.task.cancel()

    async def _kill_all(self) -> None:
        with self._lock:
            batches = list(self._batches.values())
        await asyncio.gather(*(self._kill(b) for b in batches))

    async def _restart(self) -> None:
        await self._kill_all()
        with self._lock:
            self._batches.clear()
            self._next_id = 0


def _pyspark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Livy REST server for tests")
    parser.add_argument("--port", type=int, default=8998)
    parser.add_argument("--spark-master", default=None, help="run batches on this standalone master")
    parser.add_argument("--prefix", default="")
    args = parser.parse_args(argv)
    with LivyServer(port=args.port, spark_master=args.spark_master, prefix=args.prefix) as server:
        print(f"Livy test server at {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
