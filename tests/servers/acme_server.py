"""The REST API of *Acme Spark*, the made-up service of docs/architecture.md's walkthrough.

Why a server for a service that does not exist: the walkthrough claims that a reader can add a
fifth backend from it. The conformance suite proves the claim by running against the page's own
code (tests/conformance/backends/acme.py), and that code needs a server that behaves as the
page's API table says — states that advance with time, a cancel that passes through
``CANCELLING``, 404 for unknown ids, the bearer token checked.

A job is scripted by its arguments, as ``tests/apps/sleep_then_exit.py`` is on the real
backends: ``[seconds, exit_code]`` — it runs ``seconds``, then succeeds (code 0) or fails.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Any

from aiohttp import web

from tests.servers.background import BackgroundServer

__all__ = ["AcmeServer"]

#: how long a job queues before it runs, and a cancel takes before the job is CANCELLED
QUEUED_FOR = 0.5
CANCEL_TAKES = 0.5


@dataclasses.dataclass
class AcmeJob:
    job_id: str
    name: str
    seconds: float
    exit_code: int
    submitted: float
    cancelled_at: float | None = None

    def state(self, now: float) -> tuple[str, str | None]:
        """The job's state and message at ``now``: it queues, runs ``seconds``, then ends."""
        if self.cancelled_at is not None:
            if now - self.cancelled_at < CANCEL_TAKES:
                return "CANCELLING", None
            return "CANCELLED", "cancelled by request"
        ran = now - self.submitted - QUEUED_FOR
        if ran < 0:
            return "QUEUED", None
        if ran < self.seconds:
            return "RUNNING", None
        if self.exit_code == 0:
            return "SUCCEEDED", None
        return "FAILED", f"the application exited with code {self.exit_code}"

    def to_json(self, now: float) -> dict[str, Any]:
        state, message = self.state(now)
        return {"job_id": self.job_id, "name": self.name, "state": state, "message": message}


class AcmeServer(BackgroundServer):
    """``with AcmeServer(token="t") as acme:``; clients send ``Authorization: Bearer t``."""

    def __init__(self, *, token: str) -> None:
        super().__init__(thread_name="acme-server")
        self.token = token
        self.jobs: dict[str, AcmeJob] = {}
        self._ids = itertools.count(1)

    def state(self, job_id: str) -> str:
        """A job's state, read around any proxy (what the conformance suite's ``remote_state`` is)."""
        with self._lock:
            return self.jobs[job_id].state(time.monotonic())[0]

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticate])
        app.router.add_post("/v1/jobs", self._submit)
        app.router.add_get("/v1/jobs", self._list)
        app.router.add_get("/v1/jobs/{job_id}", self._get)
        app.router.add_post("/v1/jobs/{job_id}/cancel", self._cancel)
        return app

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        with self._lock:
            self.requests.append((request.method, request.path_qs))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "invalid token"}, status=401)
        return await handler(request)

    async def _submit(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, dict) or not body.get("name") or not body.get("application"):
            return web.json_response({"error": "name and application are required"}, status=400)
        arguments = [str(a) for a in body.get("arguments") or []]
        try:
            seconds, exit_code = float(arguments[0]), int(arguments[1])
        except (IndexError, ValueError):
            seconds, exit_code = 1.0, 0
        with self._lock:
            job = AcmeJob(str(next(self._ids)), str(body["name"]), seconds, exit_code, time.monotonic())
            self.jobs[job.job_id] = job
            return web.json_response(job.to_json(time.monotonic()))

    async def _list(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        with self._lock:
            jobs = sorted(self.jobs.values(), key=lambda j: int(j.job_id), reverse=True)  # newest first
            if "ids" in request.query:
                wanted = set(request.query["ids"].split(","))
                jobs = [j for j in jobs if j.job_id in wanted]
            if prefix := request.query.get("name_prefix"):
                jobs = [j for j in jobs if j.name.startswith(prefix)]
            return web.json_response({"jobs": [j.to_json(now) for j in jobs]})

    def _job(self, request: web.Request) -> AcmeJob:
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            raise web.HTTPNotFound(text='{"error": "no such job"}', content_type="application/json")
        return job

    async def _get(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response(self._job(request).to_json(time.monotonic()))

    async def _cancel(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        with self._lock:
            job = self._job(request)
            if job.cancelled_at is None and job.state(now)[0] in ("QUEUED", "RUNNING"):
                job.cancelled_at = now
            return web.json_response(job.to_json(now))
