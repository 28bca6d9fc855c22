"""An aiohttp server on 127.0.0.1 running on its own event loop in a daemon thread.

The fault proxy and the Livy and Databricks test servers are all used from synchronous tests
*and* from code under test running its own loops, so each serves from a private loop in a
thread. This base class owns that loop, the port and the start/stop; a server only builds
its ``web.Application``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import web

__all__ = ["BackgroundServer", "free_port"]

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BackgroundServer:
    """Start with ``with Server(...) as server:``; subclasses implement :meth:`build_app`."""

    #: seconds a call into the server's loop may take (start, stop, test controls)
    call_timeout: float = 60.0

    def __init__(self, *, port: int | None = None, ssl_context: ssl.SSLContext | None = None,
                 thread_name: str | None = None) -> None:
        self.port = port or free_port()
        self.ssl_context = ssl_context
        self.origin = f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=thread_name, daemon=True)
        self._runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    async def on_stop(self) -> None:
        """Called on the server's loop before it stops serving."""

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=self.call_timeout)

    def __enter__(self) -> Any:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.build_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context).start()

    async def _stop(self) -> None:
        try:
            await self.on_stop()
        finally:
            if self._runner:
                await self._runner.cleanup()
