"""The API server side of the triggerer benchmark, run in a process of its own.

Why a separate process: the benchmark measures the CPU time and memory of the process that runs
the triggers, so the server must not share it (nor its GIL). Why the project's test servers:
they answer as the public REST docs say (Livy, Databricks Jobs API) and are already trusted by
the conformance suite; moto's server plays EMR.

What this adds to them, in subclasses, for the benchmark only:

* **One terminal moment.** Every job runs until ``end_at`` (epoch seconds), then ends
  successfully at that instant. ``arm`` re-arms the *same* jobs with a new ``end_at``, so the
  official triggers watch exactly the jobs ours watched, one after the other.
* **Server-side counting.** Requests by kind (with arrival times, for the plots) and new TCP
  connections (a transport not seen before), reset by ``arm``. The client cannot miscount
  what it does not control, such as a library opening a socket per request.
* **No O(N) work per request that the real service would not do.** The Livy test server
  garbage-collects finished batches on every request (a scan of all batches); with 5,000
  batches it would be the bottleneck of the benchmark instead of the clients. Finished batches
  are kept here (Livy's ``state-retain`` is 10 minutes by default, longer than a run).

A control API on a second port (``/arm``, ``/stats``) is not counted. Start one with
``python -m bench.servers --backend livy --n 1000 --info info.json``; it runs until killed
(SIGTERM) or until its ``--max-life`` seconds pass, so a crashed benchmark cannot leave it behind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import threading
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.servers.background import BackgroundServer, WsgiServer

__all__ = ["BACKENDS", "Meter", "main"]

log = logging.getLogger("bench.servers")

BACKENDS = ("livy", "databricks", "emr")
#: end_at of jobs not armed yet: far in the future, so they "run"
NEVER = float("inf")


class Meter:
    """Counts what a server answered since the last :meth:`reset`: requests and new connections.

    Thread-safe, because moto's server handles each connection in a thread of its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.since = time.time()
            self.cpu_since = time.process_time()
            self.requests: list[tuple[float, str]] = []
            self.connections = 0
            self._seen: weakref.WeakSet[Any] = weakref.WeakSet()

    def note(self, kind: str, connection: Any) -> None:
        """One request of ``kind`` on ``connection`` (an object that lives as long as the socket)."""
        now = time.time()
        with self._lock:
            self.requests.append((now, kind))
            if connection not in self._seen:
                self._seen.add(connection)
                self.connections += 1

    def new_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def stats(self, split_at: float | None = None) -> dict[str, Any]:
        """Counts since the reset; ``split_at`` (the jobs' terminal moment) splits the requests
        into the steady state while jobs run and the burst of final look-ups after."""
        with self._lock:
            requests = list(self.requests)
            connections = self.connections
            since = self.since
            cpu = time.process_time() - self.cpu_since
        by_kind = Counter(kind for _, kind in requests)
        per_second: Counter[int] = Counter(int(t - since) for t, _ in requests)
        return {
            "since": since,
            "requests": len(requests),
            "by_kind": dict(by_kind),
            "connections": connections,
            "server_cpu_s": round(cpu, 3),
            "per_second": [per_second.get(i, 0) for i in range(max(per_second, default=-1) + 1)],
            "requests_before_end": sum(1 for t, _ in requests if split_at is None or t < split_at),
            "by_kind_before_end": dict(Counter(k for t, k in requests if split_at is None or t < split_at)),
        }


class _ServerSide:
    """A side played by one of the project's threaded servers: its life cycle is the server's."""

    server: Any

    def __enter__(self) -> Any:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


# -- Livy ------------------------------------------------------------------------------------------


def _livy_server_class() -> type:
    from tests.servers.livy_server import LivyServer

    class BenchLivyServer(LivyServer):  # type: ignore[misc, valid-type]
        """The Livy test server with benchmark batches: ``running`` until ``end_at``, then ``success``."""

        def __init__(self, meter: Meter, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.meter = meter
            self.end_at = NEVER
            self.ended_at: float | None = None  # when the ender really flipped the states
            self._ender: asyncio.Task[None] | None = None
            self.warmup_ids: set[int] = set()

        @web.middleware
        async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
            self.meter.note(_livy_kind(request), request.transport)
            return await super()._middleware(request, handler)

        def _collect_garbage(self) -> None:
            """Kept: see the module docstring (an O(N) scan per request Livy does not do)."""

        async def _run_script(self, batch: Any, steps: Iterable[Any]) -> None:
            batch.state = "running"
            batch.app_id = f"application_1700000000000_{batch.id:05d}"
            batch.app_info.update(sparkUiUrl=f"http://127.0.0.1:8088/proxy/{batch.app_id}/",
                                  driverLogUrl=f"http://127.0.0.1:8042/node/containerlogs/{batch.app_id}/livy")
            batch.lines.extend(["bench batch started", "running the application"])
            if batch.name and batch.name.startswith("bench-warmup"):
                batch.lines.append("done")
                batch.finish("success")

        async def arm(self, end_at: float) -> None:
            """Every benchmark batch back to ``running``; all end at ``end_at``."""
            if self._ender is not None:
                self._ender.cancel()
            with self._lock:
                for batch in self._batches.values():
                    if batch.name and batch.name.startswith("bench-job"):
                        batch.state = "running"
                        batch.finished_at = None
                self.requests.clear()
                self.request_headers.clear()
            self.end_at, self.ended_at = end_at, None
            self._ender = asyncio.get_running_loop().create_task(self._end(end_at))

        async def _end(self, end_at: float) -> None:
            await asyncio.sleep(max(0.0, end_at - time.time()))
            with self._lock:
                for batch in self._batches.values():
                    if batch.name and batch.name.startswith("bench-job") and batch.state == "running":
                        batch.lines.append("done")
                        batch.finish("success")
            self.ended_at = time.time()

    return BenchLivyServer


_LIVY_KINDS = [
    (re.compile(r"/batches$"), "GET", "list"),
    (re.compile(r"/batches/\d+/state$"), "GET", "state"),
    (re.compile(r"/batches/\d+/log$"), "GET", "log"),
    (re.compile(r"/batches/\d+$"), "GET", "get"),
]


def _livy_kind(request: web.Request) -> str:
    for pattern, method, kind in _LIVY_KINDS:
        if request.method == method and pattern.search(request.path):
            return kind
    return f"{request.method} {request.path}"


class LivySide(_ServerSide):
    """Starts the Livy test server, creates the batches, arms them."""

    backend = "livy"
    #: requests that ask one job's status; ``/state`` is what LivyTrigger polls
    poll_kinds = ("state",)

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.server = _livy_server_class()(meter, state_retain=1e9)

    def connection(self) -> dict[str, Any]:
        return {"conn_type": "livy", "host": "127.0.0.1", "port": self.server.port, "schema": "http"}

    async def create(self, n: int) -> tuple[list[str], str]:
        async with aiohttp.ClientSession() as session:
            async def post(name: str) -> str:
                body = {"file": "local:///opt/bench/app.py", "name": name}
                async with session.post(f"{self.server.url}/batches", json=body) as resp:
                    resp.raise_for_status()
                    return str((await resp.json())["id"])

            warmup = await post("bench-warmup")
            ids = []
            for start in range(0, n, 200):  # in order, so ids grow with creation as in Livy
                ids += await asyncio.gather(*(post(f"bench-job-{i}") for i in range(start, min(n, start + 200))))
        return sorted(ids, key=int), warmup

    def arm(self, end_at: float) -> Awaitable[Any]:
        return asyncio.wrap_future(self.server.submit(self.server.arm(end_at)))  # batches live on its loop

    def ended_at(self) -> float | None:
        return self.server.ended_at


# -- Databricks ------------------------------------------------------------------------------------


def _databricks_server_class() -> type:
    from tests.servers.databricks_server import DatabricksServer, Phase

    running, success = Phase("RUNNING"), Phase("TERMINATED", result="SUCCESS", message="")

    class BenchDatabricksServer(DatabricksServer):  # type: ignore[misc, valid-type]
        """The Jobs API test server whose benchmark runs are ``RUNNING`` until ``end_at``."""

        def __init__(self, meter: Meter, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.meter = meter
            self.end_at = NEVER
            self.warmup_ids: set[int] = set()

        @web.middleware
        async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
            self.meter.note(request.path.rsplit("/jobs/", 1)[-1], request.transport)
            if request.method == "GET" and request.can_read_body:
                request = await _query_from_json_body(request)
            return await super()._middleware(request, handler)

        def _create(self, run: Any) -> web.Response:
            run.script = [running]  # a scripted run's tasks mirror the run (see _states)
            return super()._create(run)

        def _phase(self, run: Any, now: float) -> Any:
            if run.run_id in self.warmup_ids:
                return success
            return running if now < self.end_at else success

    return BenchDatabricksServer


async def _query_from_json_body(request: web.Request) -> web.Request:
    """The official provider's async hook sends GET parameters as a JSON body (``runs/get`` with
    ``{"run_id": …}``), which the real Jobs API accepts and the test server does not read: merge
    them into the request's query (aiohttp caches the body, so the test server can read it again)."""
    from multidict import MultiDict, MultiDictProxy

    try:
        body = await request.json()
    except ValueError:
        return request
    if isinstance(body, dict) and body:
        query = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in body.items()}
        query.update(request.query)
        request._cache["query"] = MultiDictProxy(MultiDict(query))  # the cached value of request.query
    return request


class DatabricksSide(_ServerSide):
    backend = "databricks"
    poll_kinds = ("runs/get",)

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.server = _databricks_server_class()(meter)

    def connection(self) -> dict[str, Any]:
        # Both providers read it: ours the URL in host, the official hook the schema and port.
        return {"conn_type": "databricks", "host": "http://127.0.0.1", "port": self.server.port, "schema": "http",
                "password": self.server.pat}

    async def create(self, n: int) -> tuple[list[str], str]:
        headers = {"Authorization": f"Bearer {self.server.pat}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async def submit(name: str) -> str:
                body = {"run_name": name, "tasks": [{
                    "task_key": "main", "existing_cluster_id": "0101-bench",
                    "spark_python_task": {"python_file": "dbfs:/apps/bench.py", "parameters": ["3600", "0"]}}]}
                async with session.post(f"{self.server.url}/api/2.2/jobs/runs/submit", json=body) as resp:
                    resp.raise_for_status()
                    return str((await resp.json())["run_id"])

            warmup = await submit("bench-warmup")
            self.server.warmup_ids.add(int(warmup))
            ids = []
            for start in range(0, n, 200):
                ids += await asyncio.gather(*(submit(f"bench-job-{i}") for i in range(start, min(n, start + 200))))
        return ids, warmup

    async def arm(self, end_at: float) -> None:
        self.server.clear()
        self.server.end_at = end_at

    def ended_at(self) -> float | None:
        end = self.server.end_at
        return end if end != NEVER and time.time() >= end else None


# -- EMR (moto) --------------------------------------------------------------------------------------

EMR_REGION = "us-east-1"  # where moto stores what reaches it on 127.0.0.1
#: EMR keeps at most 256 steps PENDING or RUNNING per cluster: spread the jobs over clusters
STEPS_PER_CLUSTER = 250


class EmrSide(_ServerSide):
    """moto's server behind a counting WSGI layer; steps ``RUNNING`` until ``end_at``, then ``COMPLETED``."""

    backend = "emr"
    poll_kinds = ("DescribeStep",)

    def __init__(self, meter: Meter) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

        self.meter = meter
        self.steps: list[tuple[str, str]] = []  # (cluster id, step id)
        self.warmup: tuple[str, str] | None = None
        self.end_at = NEVER
        self._ended_at: float | None = None
        self._timer: threading.Timer | None = None
        app = DomainDispatcherApplication(create_backend_app)

        def counting_app(environ: dict[str, Any], start_response: Any) -> Any:
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            meter.note(target.rsplit(".", 1)[-1] or environ.get("PATH_INFO", "?"), environ.get("bench.connection"))
            return app(environ, start_response)

        class CountingHandler(MotoRequestHandler):  # type: ignore[misc]
            """Marks each connection (one handler per connection) so requests can be attributed."""

            def make_environ(self) -> dict[str, Any]:
                environ = super().make_environ()
                environ["bench.connection"] = self
                return environ

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
        self.server = WsgiServer(counting_app, request_handler=CountingHandler, thread_name="moto")
        self.endpoint = self.server.origin

    def __exit__(self, *exc: object) -> None:
        if self._timer:
            self._timer.cancel()
        super().__exit__(*exc)

    def connection(self) -> dict[str, Any]:
        return {"conn_type": "aws", "login": "AKIABENCHBENCHBENCH0", "password": "bench-secret",
                "extra": {"region_name": EMR_REGION, "endpoint_url": self.endpoint}}

    def _client(self) -> Any:
        import boto3

        return boto3.client("emr", region_name=EMR_REGION, endpoint_url=self.endpoint,
                            aws_access_key_id="AKIABENCHBENCHBENCH0", aws_secret_access_key="bench-secret")

    def _cluster(self, client: Any, name: str) -> str:
        return str(client.run_job_flow(
            Name=name, ReleaseLabel="emr-7.1.0", ServiceRole="EMR_DefaultRole", JobFlowRole="EMR_EC2_DefaultRole",
            Instances={"InstanceCount": 1, "MasterInstanceType": "m5.xlarge", "KeepJobFlowAliveWhenNoSteps": True},
        )["JobFlowId"])

    async def create(self, n: int) -> tuple[list[str], str]:
        return await asyncio.to_thread(self._create, n)

    def _create(self, n: int) -> tuple[list[str], str]:
        client = self._client()
        step = {"ActionOnFailure": "CONTINUE",
                "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["spark-submit", "s3://bench/app.py"]}}
        warm_cluster = self._cluster(client, "bench-warmup")
        warm = client.add_job_flow_steps(JobFlowId=warm_cluster, Steps=[{**step, "Name": "bench-warmup"}])
        self.warmup = (warm_cluster, warm["StepIds"][0])
        for first in range(0, n, STEPS_PER_CLUSTER):
            cluster = self._cluster(client, f"bench-{first}")
            count = min(STEPS_PER_CLUSTER, n - first)
            for chunk in range(0, count, 200):  # AddJobFlowSteps takes at most 256 steps
                added = client.add_job_flow_steps(JobFlowId=cluster, Steps=[
                    {**step, "Name": f"bench-job-{first + chunk + i}"} for i in range(min(200, count - chunk))])
                self.steps += [(cluster, s) for s in added["StepIds"]]
        self._set_states(self.steps, "RUNNING")
        self._set_states([self.warmup], "COMPLETED")
        return [f"{c}:{s}" for c, s in self.steps], f"{self.warmup[0]}:{self.warmup[1]}"

    def _set_states(self, steps: list[tuple[str, str]], state: str) -> None:
        """Change moto's stored steps in place, as EMR's own clock would."""
        from moto.backends import get_backend
        from moto.core.utils import utcnow

        clusters: dict[str, Any] = {}
        for account in get_backend("emr").values():  # moto derives the account from the access key
            backend = account.get(EMR_REGION) if hasattr(account, "get") else None
            if backend is not None:
                clusters.update(backend.clusters)
        stored = {s.id: s for cluster_id in {c for c, _ in steps} for s in clusters[cluster_id].steps}
        now = utcnow()
        for _, step_id in steps:
            step = stored[step_id]
            step.state = state
            if state == "RUNNING":
                step.start_datetime, step.end_datetime = now, None
            else:
                step.end_datetime = now

    async def arm(self, end_at: float) -> None:
        if self._timer:
            self._timer.cancel()
        self._set_states(self.steps, "RUNNING")
        self.end_at, self._ended_at = end_at, None

        def end() -> None:
            self._set_states(self.steps, "COMPLETED")
            self._ended_at = time.time()

        self._timer = threading.Timer(max(0.0, end_at - time.time()), end)
        self._timer.daemon = True
        self._timer.start()

    def ended_at(self) -> float | None:
        return self._ended_at


SIDES: dict[str, type[Any]] = {"livy": LivySide, "databricks": DatabricksSide, "emr": EmrSide}


def _control_app(side: Any, meter: Meter) -> web.Application:
    """The control API (``/arm``, ``/stats``), on a server of its own so it is never counted."""

    async def arm(request: web.Request) -> web.Response:
        end_at = float((await request.json())["end_at"])
        await side.arm(end_at)
        meter.reset()
        return web.json_response({"ok": True, "since": meter.since})

    async def stats(request: web.Request) -> web.Response:
        ended = side.ended_at()
        return web.json_response({**meter.stats(ended), "ended_at": ended, "poll_kinds": side.poll_kinds})

    app = web.Application()
    app.router.add_post("/arm", arm)
    app.router.add_get("/stats", stats)
    return app


def _serve(backend: str, n: int, info_path: Path, max_life: float) -> None:
    meter = Meter()
    with SIDES[backend](meter) as side:
        ids, warmup = asyncio.run(side.create(n))
        with BackgroundServer(app=lambda: _control_app(side, meter), thread_name="bench-control") as control:
            info = {"backend": backend, "n": n, "job_ids": ids, "warmup_id": warmup,
                    "connection": side.connection(), "control": control.origin, "pid": os.getpid()}
            tmp = info_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(info))
            tmp.replace(info_path)  # the orchestrator waits for this file: write it whole
            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            stop.wait(max_life)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, required=True)
    parser.add_argument("--n", type=int, required=True, help="jobs to create")
    parser.add_argument("--info", type=Path, required=True, help="where to write ports and job ids (JSON)")
    parser.add_argument("--max-life", type=float, default=3600.0, help="exit after this many seconds regardless")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    _serve(args.backend, args.n, args.info, args.max_life)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
