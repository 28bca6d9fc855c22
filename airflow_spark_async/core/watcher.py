"""Coalesced polling: every trigger of one endpoint *and identity* in a triggerer shares a watcher.

Why: with one request per job per poll, a thousand jobs on one Livy server cost a thousand
requests every cycle, and the server's rate limit is shared by everyone. Triggers here
wake on a common clock grid (multiples of their poll interval), ask the watcher, and the
watcher answers all questions that arrive within a short window with one
``Backend.status_many`` call — one request per endpoint per cycle where the API can list.

Rules, each learnt from a way this goes wrong under load:

* **Keyed by identity** (:meth:`Backend.identity`: endpoint + credential digest), and a watcher
  keeps the backend it was made with — jobs of team A are never polled with team B's token.
* **Per-job errors stay per job.** A list may answer one id with its own error (an unknown id):
  that trigger gets it, at no further request, and the other answers stand.
* **Listed results first.** Jobs the list answered are resolved before anything is asked one
  by one, so a slow fallback never holds back the answers already in hand.
* **A failed list backs off; it does not fan out.** A 503 on the list is when the server
  struggles most: every trigger of the batch gets the error and backs off, instead of N single
  requests. Only jobs a *successful* list did not cover are asked for one by one, at most
  ``fallback_per_cycle`` per cycle (the rest wait for the next one).
* **A finished job keeps what the list said** if asking it again for the full story fails.
* **A rate-limit answer** slows every trigger sharing the watcher, for a validated and capped
  ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_spark_async.core import clock
from airflow_spark_async.core.backend import Backend, JobStatus
from airflow_spark_async.core.errors import RateLimitedError, TransientError
from airflow_spark_async.core.http import cap_retry_after
from airflow_spark_async.core.runtime import BACKEND_TTL, Runtime

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["BACKEND_TTL", "Watcher", "forget_backend", "get_backend", "get_watcher"]

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
            for future in batch.pop(job_id, ()):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

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
