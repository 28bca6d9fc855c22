"""Coalesced polling: every trigger of one endpoint in a triggerer shares one watcher.

Why: with one request per job per poll, a thousand jobs on one Livy server cost a thousand
requests every cycle, and the server's rate limit is shared by everyone. Triggers here
wake on a common clock grid (multiples of their poll interval), ask the watcher, and the
watcher answers all questions that arrive within a short window with one
``Backend.status_many`` call — one request per endpoint per cycle where the API can list.

Jobs the list call does not cover, or every job when the list call fails, are asked for
one by one (bounded concurrency). A job the list reports as finished is asked for once
more with ``Backend.status`` so the final event carries the backend's full explanation.
A rate-limit answer slows down every trigger sharing the watcher, honouring Retry-After.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_spark_async.core.backend import Backend, JobStatus
from airflow_spark_async.core.connections import aload_connection
from airflow_spark_async.core.errors import RateLimitedError, TransientError

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["Watcher", "get_backend", "get_watcher"]

log = logging.getLogger(__name__)

#: how long a cached backend (and the credentials it read) lives before it is rebuilt
BACKEND_TTL = 300.0

_Registry = dict[str, Any]
_REGISTRIES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Registry] = weakref.WeakKeyDictionary()


def _registry() -> _Registry:
    return _REGISTRIES.setdefault(asyncio.get_running_loop(), {"backends": {}, "watchers": {}})


async def get_backend(
    backend_cls: type[Backend], conn_id: str, options: Mapping[str, Any], *, conn: Connection | None = None
) -> Backend:
    """The backend for (class, connection, options) of this loop, rebuilt after ``BACKEND_TTL``.

    ``conn`` skips the look-up when the caller already holds the connection (the worker).
    """
    key = f"{backend_cls.__module__}.{backend_cls.__qualname__}|{conn_id}|{json.dumps(options, sort_keys=True)}"
    cache = _registry()["backends"]
    entry = cache.get(key)
    if entry is None or time.monotonic() - entry[1] > BACKEND_TTL:
        if conn is None:
            conn = await aload_connection(conn_id)
        entry = (await backend_cls.from_connection(conn, options), time.monotonic())
        cache[key] = entry
    return entry[0]


def get_watcher(backend: Backend) -> Watcher:
    """The watcher of this loop for the backend's endpoint."""
    watchers = _registry()["watchers"]
    key = f"{type(backend).__module__}.{type(backend).__qualname__}|{backend.watch_key}"
    watcher = watchers.get(key)
    if watcher is None:
        watcher = watchers[key] = Watcher(backend)
    else:
        watcher.backend = backend  # pick up a rebuilt backend (fresh credentials)
    return watcher


class Watcher:
    """Answers ``status(job_id)`` questions in batches; see the module docstring."""

    #: questions arriving within this window share one request
    batch_window: float = 0.05
    #: list only when at least this many jobs are asked about at once
    list_threshold: int = 2
    #: concurrent per-job requests when falling back
    fallback_concurrency: int = 16

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

    def slow_down(self, seconds: float) -> None:
        """Hold every request of this endpoint for ``seconds`` (a 429 or throttling answer)."""
        self._not_before = max(self._not_before, time.monotonic() + seconds)

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(max(self.batch_window, self._not_before - time.monotonic()))
            batch = {
                job_id: live
                for job_id, futures in self._pending.items()
                if (live := [f for f in futures if not f.done()])
            }
            self._pending = {}
            if not batch:
                continue
            outcomes = await self._fetch(list(batch))
            for job_id, futures in batch.items():
                outcome = outcomes[job_id]
                for future in futures:
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)

    async def _fetch(self, job_ids: list[str]) -> dict[str, JobStatus | BaseException]:
        outcomes: dict[str, JobStatus | BaseException] = {}
        if len(job_ids) >= self.list_threshold:
            try:
                self.requests += 1
                listed = await self.backend.status_many(job_ids)
            except asyncio.CancelledError:
                raise
            except RateLimitedError as exc:
                # The endpoint said "slow down": asking every job one by one now would be N more
                # requests at the worst moment. Every trigger of this batch backs off instead.
                self._note(exc)
                return dict.fromkeys(job_ids, exc)
            except Exception as exc:  # the fallback below answers; the cause is worth a line
                self._note(exc)
                log.info("listing %d jobs on %s failed (%s); asking one by one", len(job_ids), self.backend.name, exc)
                listed = None
            wanted = set(job_ids)  # a set: thousands of jobs are listed every cycle
            for job_id, status in (listed or {}).items():
                if job_id in wanted and not status.is_terminal:
                    outcomes[job_id] = status
        missing = [job_id for job_id in job_ids if job_id not in outcomes]
        semaphore = asyncio.Semaphore(self.fallback_concurrency)

        async def one(job_id: str) -> None:
            async with semaphore:
                try:
                    self.requests += 1
                    outcomes[job_id] = await self.backend.status(job_id)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._note(exc)
                    outcomes[job_id] = exc

        await asyncio.gather(*(one(job_id) for job_id in missing))
        return outcomes

    def _note(self, exc: BaseException) -> None:
        if isinstance(exc, RateLimitedError) or (isinstance(exc, TransientError) and exc.retry_after):
            self.slow_down(exc.retry_after or 1.0)
