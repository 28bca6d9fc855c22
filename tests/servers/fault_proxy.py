"""A reverse proxy on 127.0.0.1 that forwards to a real server and injects faults on demand.

Why a proxy instead of mocks: the code under test talks HTTP to what it believes is the
backend, through its real aiohttp sessions; the proxy answers 429/503/garbage or resets
the connection for the next N matching requests, then passes traffic through untouched.
It works in front of any backend — the real Spark master, the Livy and Databricks test
servers, moto — so the conformance suite can prove one fault policy for all of them.

It also records every request, so a test can assert what was (not) sent: no submission
after bad input, a kill after a deadline, how many polls a cycle cost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
from aiohttp import web

from tests.servers.background import BackgroundServer

__all__ = ["Fault", "FaultProxy"]


@dataclasses.dataclass
class Fault:
    """Answer the next ``count`` requests whose path matches ``path`` with ``kind``.

    kinds: ``429`` (with ``Retry-After: retry_after``), ``500``, ``503``, ``reset`` (close
    the socket without an answer), ``malformed`` (200 with a body that is not JSON),
    ``slow`` (wait ``delay`` seconds, then forward).
    """

    kind: str
    count: int = 1
    path: str = ".*"
    retry_after: float | None = 1.0
    delay: float = 0.0


class FaultProxy(BackgroundServer):
    """Start with ``with FaultProxy(upstream) as proxy:``; point clients at ``proxy.url``."""

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.requests: list[tuple[str, str]] = []
        self.injected: list[tuple[str, str]] = []
        self._faults: list[Fault] = []
        self._session: aiohttp.ClientSession | None = None

    # -- control from the test ----------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()
            self.injected.clear()

    @contextmanager
    def faults(self, *faults: Fault) -> Iterator[FaultProxy]:
        self.inject(*faults)
        try:
            yield self
        finally:
            with self._lock:
                self._faults.clear()

    # -- serving ------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def on_stop(self) -> None:
        if self._session:
            await self._session.close()

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.count > 0 and re.search(fault.path, path):
                    fault.count -= 1
                    return fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs
        with self._lock:
            self.requests.append((request.method, path))
        fault = self._take_fault(path)
        if fault is not None:
            with self._lock:
                self.injected.append((fault.kind, path))
            if fault.kind == "reset":
                assert request.transport is not None
                request.transport.abort()
                return web.Response(status=500)  # never reaches the client
            if fault.kind == "429":
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                return web.json_response({"message": "Too many requests"}, status=429, headers=headers)
            if fault.kind in ("500", "503"):
                return web.json_response({"message": "injected server error"}, status=int(fault.kind))
            if fault.kind == "malformed":
                return web.Response(status=200, text="<html>proxy error</html>", content_type="text/html")
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(
            request.method, self.upstream + path, data=body or None, headers=headers, allow_redirects=False
        ) as upstream:
            payload = await upstream.read()
            out_headers = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")
            }
            return web.Response(status=upstream.status, body=payload, headers=out_headers)
