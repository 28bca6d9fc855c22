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
    await rt.backend(cls, conn_id, options)  # built once per process (class, conn id, options)
    rt.forget_backend(cls, conn_id, options) # rebuilt on next use (credentials rotated)
    await rt.close()                         # backends' aclose(), then resources, then sessions

After :meth:`close`, ``Runtime.current()`` on the same loop starts a fresh runtime.

Backends are the one thing kept per *process*, not per loop: a worker runs one short-lived loop
per sync-bridge call, so a per-loop cache read the connection and built the backend anew at every
step of one task (four times for one Livy job). A backend therefore holds no loop-bound resource:
it asks ``Runtime.current()`` for sessions and clients at each call, and ``aclose()`` releases
what it opened in the closing loop. :func:`reset_backends` empties the process cache (tests that
point one connection id at a new server, the simulation between worlds).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import threading
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

__all__ = ["BACKEND_TTL", "Runtime", "backend_key", "reset_backends"]

log = logging.getLogger(__name__)

T = TypeVar("T")
B = TypeVar("B", bound="Backend")

#: how long a cached backend (and the credentials it read) lives before it is rebuilt
BACKEND_TTL = 300.0


#: key -> (backend, monotonic time it was built): the backends of this process, for every loop
_BACKENDS: dict[str, tuple[Backend, float]] = {}
_BACKENDS_LOCK = threading.Lock()  # the sync bridge may run its loop in another thread


def reset_backends() -> None:
    """Forget every cached backend of the process: the next use reads its connection again."""
    with _BACKENDS_LOCK:
        _BACKENDS.clear()


def _cached_backend(key: str) -> Backend | None:
    with _BACKENDS_LOCK:
        entry = _BACKENDS.get(key)
    if entry is None or clock.monotonic() - entry[1] > BACKEND_TTL:
        return None
    return entry[0]


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
        #: key -> the build in flight on this loop; a task, so concurrent callers await the same
        #: build instead of reading the connection twice (done builds go to the process cache)
        self._building: dict[str, asyncio.Task[Backend]] = {}
        #: every backend used on this loop, to ``aclose()`` at the end (replaced ones may still be in use)
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
        """The backend of (class, connection, options), built once per process and rebuilt after
        ``BACKEND_TTL``.

        ``conn`` skips the connection look-up when the caller already holds it (the worker).
        Concurrent first calls on one loop share one build; a failed build is not cached.
        """
        key = backend_key(backend_cls, conn_id, options)
        cached = _cached_backend(key)
        if cached is not None:
            self._built.add(cached)
            return cached  # type: ignore[return-value]
        task = self._building.get(key)
        if task is None:
            task = self._building[key] = asyncio.get_running_loop().create_task(
                self._build(key, backend_cls, conn_id, options, conn)
            )
            task.add_done_callback(functools.partial(self._build_done, key))
        # shielded: one caller's cancellation must not cancel the build the others await
        built: Backend = await asyncio.shield(task)
        return built  # type: ignore[return-value]

    def _build_done(self, key: str, task: asyncio.Task[Backend]) -> None:
        if self._building.get(key) is task:
            del self._building[key]

    async def _build(
        self, key: str, backend_cls: type[Backend], conn_id: str, options: Mapping[str, Any], conn: Connection | None
    ) -> Backend:
        if conn is None:
            conn = await aload_connection(conn_id)
        backend = await backend_cls.from_connection(conn, options)
        self.builds += 1
        self._built.add(backend)
        with _BACKENDS_LOCK:
            _BACKENDS[key] = (backend, clock.monotonic())
        return backend

    def forget_backend(self, backend_cls: type[Backend], conn_id: str, options: Mapping[str, Any]) -> None:
        """Drop the cached backend, so the next :meth:`backend` re-reads the connection (after a
        401: the credentials may have been rotated)."""
        key = backend_key(backend_cls, conn_id, options)
        with _BACKENDS_LOCK:
            _BACKENDS.pop(key, None)
        self._building.pop(key, None)

    async def close(self) -> None:
        """Close everything: each backend's ``aclose()``, then registered resources, then sessions.

        In that order because backends use the others while they close. One failure to close is
        logged and does not keep the rest open; cancellation is never swallowed.
        """
        self.closed = True
        for task in self._building.values():
            if not task.done():
                task.cancel()
        backends, self._built = list(self._built), weakref.WeakSet()
        closables, self._closables = list(self._closables.values()), {}
        sessions, self._sessions = list(self._sessions.values()), {}
        self._building, self._shared = {}, {}
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
