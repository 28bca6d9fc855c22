"""Everything one event loop shares, owned in one place and closed together.

Why one owner: a triggerer runs thousands of triggers on one loop, and they must share the
expensive things — aiohttp sessions (sockets), backend clients (aiobotocore), backends (a
connection read, credentials), watchers, throttle gates. The worker's sync bridge runs a
short-lived loop per call, and everything that loop made must be closed before it ends, or
"Unclosed client session" warnings leak into task logs. Before this module each of those had
its own per-loop registry (http sessions, the watcher's backend cache, EMR's clients, with a
backend writing into http's private registry to be closed); now each is a :class:`Runtime`
method, and ``await Runtime.current().close()`` closes all of it.

API (all per running loop)::

    rt = Runtime.current()
    rt.session(endpoint, options)            # pooled aiohttp session per (endpoint, HttpOptions)
    rt.shared(key, factory)                  # any object, made once per key (clients, batchers)
    rt.on_close(key, closable)               # closed with the loop (``close()`` or ``aclose()``)
    rt.gate(key)                             # the ThrottleGate of an endpoint and identity
    await rt.backend(cls, conn_id, options)  # built once per (class, conn id, options)
    rt.forget_backend(cls, conn_id, options) # rebuilt on next use (credentials rotated)
    await rt.close()                         # backends' aclose(), then resources, then sessions

After :meth:`close`, ``Runtime.current()`` on the same loop starts a fresh runtime.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from airflow_spark_async.core import clock
from airflow_spark_async.core.connections import aload_connection
from airflow_spark_async.core.http import DEFAULT_OPTIONS, HttpOptions
from airflow_spark_async.core.retry import ThrottleGate

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_spark_async.core.backend import Backend

__all__ = ["BACKEND_TTL", "Runtime", "backend_key"]

log = logging.getLogger(__name__)

T = TypeVar("T")
B = TypeVar("B", bound="Backend")

#: how long a cached backend (and the credentials it read) lives before it is rebuilt
BACKEND_TTL = 300.0


def backend_key(backend_cls: type[Backend], conn_id: str, options: Mapping[str, Any]) -> str:
    """What makes two backends interchangeable: class, connection id and options."""
    return f"{backend_cls.__module__}.{backend_cls.__qualname__}|{conn_id}|{json.dumps(options, sort_keys=True)}"


class Runtime:
    """The shared state of one event loop; see the module docstring. Get it with :meth:`current`."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runtime] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, HttpOptions], aiohttp.ClientSession] = {}
        self._shared: dict[str, Any] = {}
        self._closables: dict[str, Any] = {}
        #: key -> (the build of the backend, monotonic time it started); a task, so concurrent
        #: callers await the same build instead of reading the connection twice
        self._backends: dict[str, tuple[asyncio.Task[Backend], float]] = {}
        #: every backend built, to ``aclose()`` at the end (replaced ones may still be in use)
        self._built: weakref.WeakSet[Backend] = weakref.WeakSet()
        self.closed = False
        self.builds = 0  # observable: backends built, for tests and benchmarks

    @classmethod
    def current(cls) -> Runtime:
        """The runtime of the running loop (made on first use; fresh again after :meth:`close`)."""
        loop = asyncio.get_running_loop()
        runtime = cls._by_loop.get(loop)
        if runtime is None or runtime.closed:
            runtime = cls._by_loop[loop] = cls()
        return runtime

    def session(self, endpoint: str, options: HttpOptions = DEFAULT_OPTIONS) -> aiohttp.ClientSession:
        """The pooled session for ``endpoint`` (scheme://host:port) and ``options``."""
        key = (endpoint, options)
        session = self._sessions.get(key)
        if session is None or session.closed:
            session = self._sessions[key] = options.new_session()
        return session

    def shared(self, key: str, factory: Callable[[], T]) -> T:
        """The object of ``key``, made by ``factory()`` on first use and kept for the loop's life
        (a backend's client pool, a request coalescer, a watcher). Registered with :meth:`on_close`
        when it has ``close()`` or ``aclose()``."""
        if key not in self._shared:
            value = self._shared[key] = factory()
            if _closer(value) is not None:
                self.on_close(key, value)
        return self._shared[key]  # type: ignore[no-any-return]

    def on_close(self, key: str, closable: Any) -> None:
        """Close ``closable`` (``await close()`` or ``await aclose()``) when the runtime closes;
        a second registration under ``key`` replaces the first."""
        if _closer(closable) is None:
            raise TypeError(f"{closable!r} has neither close() nor aclose()")
        self._closables[key] = closable

    def gate(self, key: str) -> ThrottleGate:
        """The throttle gate of one endpoint and identity (``Backend.identity()``): every caller
        of it slows down together after a throttling answer."""
        return self.shared(f"gate|{key}", ThrottleGate)

    async def backend(
        self, backend_cls: type[B], conn_id: str, options: Mapping[str, Any], *, conn: Connection | None = None
    ) -> B:
        """The backend of (class, connection, options), built once and rebuilt after ``BACKEND_TTL``.

        ``conn`` skips the connection look-up when the caller already holds it (the worker).
        Concurrent first calls share one build; a failed build is not cached.
        """
        key = backend_key(backend_cls, conn_id, options)
        entry = self._backends.get(key)
        if entry is None or clock.monotonic() - entry[1] > BACKEND_TTL or (
            entry[0].done() and (entry[0].cancelled() or entry[0].exception() is not None)
        ):
            task = asyncio.get_running_loop().create_task(self._build(backend_cls, conn_id, options, conn))
            entry = self._backends[key] = (task, clock.monotonic())
        task = entry[0]
        try:
            # shielded: one caller's cancellation must not cancel the build the others await
            built: Backend = await asyncio.shield(task)
            return built  # type: ignore[return-value]
        except BaseException:
            if task.done() and self._backends.get(key, (None,))[0] is task:
                del self._backends[key]
            raise

    async def _build(
        self, backend_cls: type[Backend], conn_id: str, options: Mapping[str, Any], conn: Connection | None
    ) -> Backend:
        if conn is None:
            conn = await aload_connection(conn_id)
        backend = await backend_cls.from_connection(conn, options)
        self.builds += 1
        self._built.add(backend)
        return backend

    def forget_backend(self, backend_cls: type[Backend], conn_id: str, options: Mapping[str, Any]) -> None:
        """Drop the cached backend, so the next :meth:`backend` re-reads the connection (after a
        401: the credentials may have been rotated)."""
        self._backends.pop(backend_key(backend_cls, conn_id, options), None)

    async def close(self) -> None:
        """Close everything: each backend's ``aclose()``, then registered resources, then sessions.

        In that order because backends use the others while they close. One failure to close is
        logged and does not keep the rest open; cancellation is never swallowed.
        """
        self.closed = True
        for task, _ in self._backends.values():
            if not task.done():
                task.cancel()
        backends, self._built = list(self._built), weakref.WeakSet()
        closables, self._closables = list(self._closables.values()), {}
        sessions, self._sessions = list(self._sessions.values()), {}
        self._backends, self._shared = {}, {}
        for thing in [*backends, *closables, *sessions]:
            close = _closer(thing)
            if close is None:
                continue
            try:
                result = close()
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("closing %r failed", thing, exc_info=True)


def _closer(thing: Any) -> Callable[[], Any] | None:
    """``thing.aclose`` or ``thing.close``, whichever it has (``aclose`` first: a backend's)."""
    for name in ("aclose", "close"):
        method = getattr(thing, name, None)
        if callable(method):
            return method  # type: ignore[no-any-return]
    return None
