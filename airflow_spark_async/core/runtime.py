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

The module also holds the two edges between Airflow's synchronous worker and this async world:
reading connections (:func:`load_connection`, :func:`aload_connection`) and the one sync bridge
(:func:`run_sync`, :func:`call_backend`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import json
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from airflow.sdk.exceptions import AirflowRuntimeError

from airflow_spark_async.core.airflow_versions import AirflowNotFoundException, BaseHook, aget_connection
from airflow_spark_async.core.errors import ConfigurationError, ConnectionFailed, RateLimitedError, TransientError
from airflow_spark_async.core.http import DEFAULT_OPTIONS, HttpOptions
from airflow_spark_async.core.retry import ThrottleGate, cap_retry_after, clock

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_spark_async.core.backend import Backend, JobStatus

__all__ = [
    "BACKEND_TTL",
    "BackendHook",
    "Runtime",
    "Watcher",
    "aload_connection",
    "backend_key",
    "call_backend",
    "check_connection",
    "forget_backend",
    "get_backend",
    "get_watcher",
    "load_connection",
    "reset_backends",
    "run_sync",
    "set_runner",
    "settle",
]

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


# -------------------- connections -----------------------------------------------------------
# Reading Airflow connections, with the one error message a missing connection deserves.
#
# The worker reads synchronously before it submits; the triggerer reads asynchronously so
# the event loop never blocks. Only a connection that really does not exist becomes a
# ``ConfigurationError`` naming the connection id and how to define it: any other failure of
# Airflow's runtime (an API-server blip, a timeout) is a :class:`ConnectionFailed` — transient —
# so that one restart of the API server does not fail every deferred task at once.

def _translate(conn_id: str, exc: Exception) -> Exception:
    error = getattr(getattr(exc, "error", None), "error", None)
    if isinstance(exc, AirflowRuntimeError) and getattr(error, "value", None) != "CONNECTION_NOT_FOUND":
        return ConnectionFailed(f"could not read Airflow connection {conn_id!r}: {exc}")
    return ConfigurationError(
        f"Airflow connection {conn_id!r} is not defined ({exc}). Create it in the UI, with "
        f"`airflow connections add {conn_id} ...`, or as the environment variable "
        f"AIRFLOW_CONN_{conn_id.upper()}."
    )


def load_connection(conn_id: str) -> Connection:
    try:
        return BaseHook.get_connection(conn_id)
    except (AirflowNotFoundException, AirflowRuntimeError, LookupError) as exc:
        raise _translate(conn_id, exc) from exc


async def aload_connection(conn_id: str) -> Connection:
    try:
        return await aget_connection(conn_id)
    except (AirflowNotFoundException, AirflowRuntimeError, LookupError) as exc:
        raise _translate(conn_id, exc) from exc


# -------------------- sync ------------------------------------------------------------------
# The one bridge from the worker's synchronous code to the async backends.
#
# Operators call backends through :func:`run_sync`; there are no synchronous twins of the
# backend methods to keep in step. The private loop's runtime — HTTP sessions, backend
# clients, backends — is closed before the loop ends, so no "Unclosed client session"
# warnings leak into task logs.

#: replaces the private-loop bridge when set (see :func:`set_runner`); ``None`` in production
_runner: Callable[[Callable[[], Awaitable[Any]]], Any] | None = None


def set_runner(runner: Callable[[Callable[[], Awaitable[Any]]], Any] | None = None) -> None:
    """Run the worker's backend calls with ``runner(make)`` instead of a private event loop.

    A seam for the fault-schedule simulation (``tests/sim``), which runs the worker's code on
    its one virtual-time loop; ``set_runner()`` restores the production bridge.
    """
    global _runner
    _runner = runner


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run ``make()`` to completion on a private event loop and return its result.

    ``make`` is a zero-argument callable returning the awaitable, so that the coroutine is
    created inside the loop that runs it. If this thread already runs a loop (a notebook,
    an async test), the work runs on a fresh thread instead of deadlocking.
    """

    async def main() -> T:
        try:
            return await make()
        finally:
            await Runtime.current().close()

    if _runner is not None:
        return _runner(make)  # type: ignore[no-any-return]
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


def call_backend(
    backend_cls: type[Backend],
    conn_id: str,
    options: Mapping[str, Any],
    call: Callable[[Backend], Awaitable[T]],
    *,
    conn: Connection | None = None,
) -> T:
    """``call(backend)`` on the worker, for the backend of (class, connection, options)."""

    async def run() -> T:
        return await call(await Runtime.current().backend(backend_cls, conn_id, options, conn=conn))

    return run_sync(run)


def check_connection(backend_cls: type[Backend], conn: Connection) -> tuple[bool, str]:
    """What a hook's ``test_connection`` answers for Airflow's Test button: ``(ok, message)``.

    The backend is built from ``conn`` itself — the form's values, which Airflow has not saved —
    never taken from the process's cache of backends, and asked one :meth:`Backend.probe`. A failure
    is reported, not raised, with the core's message (what is wrong, and often what to do).
    """

    async def probe() -> str:
        backend = await backend_cls.from_connection(conn, {})
        try:
            return await backend.probe()
        finally:
            await backend.aclose()

    try:
        return True, run_sync(probe)
    except Exception as exc:  # the Test button shows any failure as text
        return False, f"{type(exc).__name__}: {exc}"


class BackendHook(BaseHook):
    """The hook of a connection type the package registers: it names the type for Airflow's registry
    (``conn_type``, ``conn_name_attr``, ``default_conn_name``, ``hook_name``) and answers the Test
    button by probing :meth:`backend_class`'s backend. The work is the backend's, not the hook's.

    Built as Airflow builds a hook — ``Hook(**{conn_name_attr: conn_id})`` — or with the id first.
    """

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        named = kwargs.pop(self.conn_name_attr, None)
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected arguments {sorted(kwargs)}")
        setattr(self, self.conn_name_attr, named or conn_id or self.default_conn_name)

    @classmethod
    def backend_class(cls) -> type[Backend]:
        """The backend that reads this connection type."""
        raise NotImplementedError

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's Test button: one read-only request with the connection's credentials (:func:`check_connection`)."""
        return check_connection(self.backend_class(), self.get_connection(getattr(self, self.conn_name_attr)))


# -------------------- watcher ---------------------------------------------------------------
# Coalesced polling: every trigger of one endpoint *and identity* in a triggerer shares a watcher.
#
# Why: with one request per job per poll, a thousand jobs on one Livy server cost a thousand
# requests every cycle, and the server's rate limit is shared by everyone. Triggers here
# wake on a common clock grid (multiples of their poll interval), ask the watcher, and the
# watcher answers all questions that arrive within a short window with one
# ``Backend.status_many`` call — one request per endpoint per cycle where the API can list.
#
# Rules, each learnt from a way this goes wrong under load:
#
# * **Keyed by identity** (:meth:`Backend.identity`: endpoint + credential digest), and a watcher
#   keeps the backend it was made with — jobs of team A are never polled with team B's token.
# * **Per-job errors stay per job.** A list may answer one id with its own error (an unknown id):
#   that trigger gets it, at no further request, and the other answers stand.
# * **Listed results first.** Jobs the list answered are resolved before anything is asked one
#   by one, so a slow fallback never holds back the answers already in hand.
# * **A failed list backs off; it does not fan out.** A 503 on the list is when the server
#   struggles most: every trigger of the batch gets the error and backs off, instead of N single
#   requests. Only jobs a *successful* list did not cover are asked for one by one, at most
#   ``fallback_per_cycle`` per cycle (the rest wait for the next one).
# * **A finished job keeps what the list said** if asking it again for the full story fails.
# * **A rate-limit answer** slows every trigger sharing the watcher, for a validated and capped
#   ``Retry-After``.

log = logging.getLogger(__name__)

async def get_backend(
    backend_cls: type[Backend], conn_id: str, options: Mapping[str, Any], *, conn: Connection | None = None
) -> Backend:
    """The backend for (class, connection, options) of this loop: ``Runtime.current().backend``."""
    return await Runtime.current().backend(backend_cls, conn_id, options, conn=conn)


def forget_backend(backend_cls: type[Backend], conn_id: str, options: Mapping[str, Any]) -> None:
    """Drop the cached backend (after a 401): ``Runtime.current().forget_backend``."""
    Runtime.current().forget_backend(backend_cls, conn_id, options)


def get_watcher(backend: Backend) -> Watcher:
    """The watcher of this loop for the backend's endpoint and identity."""
    key = f"watcher|{type(backend).__module__}.{type(backend).__qualname__}|{backend.identity()}"
    return Runtime.current().shared(key, lambda: Watcher(backend))


def settle(futures: Iterable[asyncio.Future[T]], outcome: T | BaseException) -> None:
    """Give every future still waiting the one outcome: an exception is raised in each waiter.

    A future already done (its waiter gave up, or an earlier answer settled it) is left alone.
    """
    for future in futures:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class Watcher:
    """Answers ``status(job_id)`` questions in batches; see the module docstring."""

    #: questions arriving within this window share one request
    batch_window: float = 0.05
    #: list only when at least this many jobs are asked about at once
    list_threshold: int = 2
    #: concurrent per-job requests
    fallback_concurrency: int = 16
    #: per-job requests per cycle at most; the rest wait for the next cycle
    fallback_per_cycle: int = 64
    #: seconds before jobs left over by ``fallback_per_cycle`` are asked again
    leftover_delay: float = 1.0

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._pending: dict[str, list[asyncio.Future[JobStatus]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._not_before = 0.0
        self.requests = 0  # observable cost, for tests and benchmarks

    async def status(self, job_id: str) -> JobStatus:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JobStatus] = loop.create_future()
        self._pending.setdefault(job_id, []).append(future)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain(), name=f"spark-async-watcher-{self.backend.name}")
        return await future

    def slow_down(self, seconds: float | None) -> None:
        """Hold every request of this endpoint for ``seconds`` (a 429 or throttling answer)."""
        wait = cap_retry_after(seconds)
        if wait:
            self._not_before = max(self._not_before, clock.monotonic() + wait)

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(max(self.batch_window, self._not_before - clock.monotonic()))
            batch = {
                job_id: live
                for job_id, futures in self._pending.items()
                if (live := [f for f in futures if not f.done()])
            }
            self._pending = {}
            if batch:
                await self._answer(batch)

    async def _answer(self, batch: dict[str, list[asyncio.Future[JobStatus]]]) -> None:
        def deliver(job_id: str, outcome: JobStatus | BaseException) -> None:
            settle(batch.pop(job_id, ()), outcome)

        finished: dict[str, JobStatus] = {}
        if len(batch) >= self.list_threshold:
            try:
                self.requests += 1
                listed = await self.backend.status_many(list(batch))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The endpoint struggles: asking every job one by one now would be N more requests
                # at the worst moment. Every trigger of this batch backs off with its own budget.
                self._note(exc)
                log.info("listing %d jobs on %s failed (%s); every trigger backs off", len(batch),
                         self.backend.name, exc)
                for job_id in list(batch):
                    deliver(job_id, exc)
                return
            for job_id, status in (listed or {}).items():
                if job_id not in batch:
                    continue
                if isinstance(status, BaseException):
                    deliver(job_id, status)  # that job's own error (unknown id): the others are unaffected
                elif status.is_terminal:
                    finished[job_id] = status  # asked again below, for the backend's full explanation
                else:
                    deliver(job_id, status)
        ask = list(batch)
        if len(ask) > self.fallback_per_cycle:
            ask, later = ask[: self.fallback_per_cycle], ask[self.fallback_per_cycle :]
            for job_id in later:
                self._pending.setdefault(job_id, []).extend(batch.pop(job_id))
            self._not_before = max(self._not_before, clock.monotonic() + self.leftover_delay)
        semaphore = asyncio.Semaphore(self.fallback_concurrency)

        async def one(job_id: str) -> None:
            async with semaphore:
                try:
                    self.requests += 1
                    outcome: JobStatus | BaseException = await self.backend.status(job_id)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._note(exc)
                    # a listed end is still the truth when its details cannot be read
                    outcome = finished.get(job_id, exc)
                deliver(job_id, outcome)

        await asyncio.gather(*(one(job_id) for job_id in ask))

    def _note(self, exc: BaseException) -> None:
        if isinstance(exc, RateLimitedError) or (isinstance(exc, TransientError) and exc.retry_after):
            self.slow_down(exc.retry_after or 1.0)
