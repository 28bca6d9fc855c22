"""Servers on 127.0.0.1 that serve from a daemon thread: the one life cycle of every test server.

The fault proxy, the Livy and Databricks test servers, the fake Spark master and the benchmark's
servers are used from synchronous tests *and* from code under test running its own event loops,
so each serves from a thread of its own. :class:`ThreadedServer` owns what they share — a free
port, the origin, ``start``/``stop`` and ``with``, the record of requests tests count — and two
kinds fill in how to serve:

* :class:`BackgroundServer`, an aiohttp application on a private event loop (our test servers);
* :class:`WsgiServer`, a WSGI application on werkzeug's threaded server (moto's, for the benchmark).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiohttp import web

__all__ = ["BackgroundServer", "ThreadedServer", "WsgiServer", "free_port", "serve_app"]

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve_app(app: web.Application, *, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """Serve ``app`` on the *running* loop at a free port and yield its origin: for async tests whose
    server and client share one loop (no thread needed). The package's sessions of this loop are
    closed before the server, so no "Unclosed client session" warning escapes the test."""
    from airflow_spark_async.core.http import close_loop_sessions

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await close_loop_sessions()
        await runner.cleanup()


class ThreadedServer:
    """``with Server(...) as server:`` (or ``start()`` … ``stop()``); it listens on ``origin``.

    ``start`` returns once the server accepts connections, so a test never races its server.
    """

    def __init__(self, *, port: int | None = None, ssl_context: ssl.SSLContext | None = None,
                 thread_name: str | None = None) -> None:
        self.port = port or free_port()
        self.ssl_context = ssl_context
        self.origin = f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}"
        self.thread_name = thread_name
        #: every request, as a tuple that starts (method, path with query); what :meth:`count` reads
        self.requests: list[Any] = []
        #: guards what the serving thread records against the test reading it
        self._lock = threading.RLock()

    @property
    def url(self) -> str:
        """Where clients point (the origin, unless the server serves under a prefix)."""
        return self.origin

    def count(self, method: str, path_regex: str) -> int:
        """How many recorded requests had ``method`` and a path matching ``path_regex``."""
        with self._lock:
            return sum(1 for m, p, *_ in self.requests if m == method and re.search(path_regex, p))

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:  # Any: each server's ``with`` gives the server's own type
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BackgroundServer(ThreadedServer):
    """An aiohttp application on its own event loop: subclasses implement :meth:`build_app`, or pass
    ``app``, a function that builds it (for a server with nothing of its own to keep)."""

    #: seconds a call into the server's loop may take (start, stop, test controls)
    call_timeout: float = 60.0

    def __init__(self, *, port: int | None = None, ssl_context: ssl.SSLContext | None = None,
                 thread_name: str | None = None, app: Callable[[], web.Application] | None = None) -> None:
        super().__init__(port=port, ssl_context=ssl_context, thread_name=thread_name)
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=thread_name, daemon=True)
        self._runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:
        if self._app is None:
            raise NotImplementedError(f"{type(self).__name__} must implement build_app or be given app")
        return self._app()

    async def on_stop(self) -> None:
        """Called on the server's loop before it stops serving."""

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the server's loop (where its state lives); its future, for any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's loop and wait for its result."""
        return self.submit(coro).result(timeout=self.call_timeout)

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    def stop(self) -> None:
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


class WsgiServer(ThreadedServer):
    """A WSGI application on werkzeug's threaded server (a thread per connection).

    :param request_handler: werkzeug's request handler class, or a subclass of it.
    """

    def __init__(self, app: Callable[..., Any], *, request_handler: type[Any] | None = None,
                 port: int | None = None, thread_name: str | None = None) -> None:
        super().__init__(port=port, thread_name=thread_name)
        self.app = app
        self.request_handler = request_handler
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from werkzeug.serving import make_server

        # bound and listening once make_server returns: serve_forever only accepts
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True,
                                   request_handler=self.request_handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
