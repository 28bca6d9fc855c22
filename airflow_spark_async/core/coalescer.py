"""Many concurrent questions, few requests: one request coalescer for every backend.

Why: a triggerer asks about many jobs at the same moment (triggers wake on a common poll
grid), and most APIs answer several per call — EMR's ``ListSteps`` takes ten step ids of one
cluster. Asking one by one multiplies requests by the number of jobs, against a rate limit
every user of the endpoint shares. A :class:`Coalescer` lets each caller ``await get(key)``
as if alone, and answers everything asked within one loop turn (or ``window`` seconds) with
as few ``fetch`` calls as ``max_batch`` allows::

    steps = Coalescer(list_steps, group=lambda key: key[0], max_batch=10)   # key: (cluster, step)
    info = await steps.get((cluster_id, step_id))

Rules:

* **Per-key errors stay per key.** ``fetch`` maps each key to its value or to an exception;
  an exception is raised to that key's callers only.
* **A failed fetch fails its batch, not the others.** If ``fetch`` raises, every caller of
  that batch gets the error; batches fetched alongside are unaffected.
* **Keys the fetch did not answer** get ``missing(key)`` — or a ``LookupError``.
* **Cancellation is the caller's own.** A cancelled caller leaves the batch; a key nobody
  waits for any more is not fetched; no caller is left waiting if the fetch task is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Generic, TypeVar

from airflow_spark_async.core.runtime import settle

__all__ = ["Coalescer"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    """Groups concurrent :meth:`get` calls into ``fetch`` calls; see the module docstring.

    :param fetch: ``fetch(keys)`` → a mapping of each key to its value or to an exception. Never
        given an empty list, nor more than ``max_batch`` keys, nor keys of two ``group`` values.
    :param max_batch: the most keys per ``fetch``; ``None``: no limit.
    :param group: keys with different ``group(key)`` never share a ``fetch`` (one cluster per call).
    :param window: seconds to collect questions before fetching; ``0``: those of one loop turn.
    :param missing: the value of a key ``fetch`` left out; by default its callers get ``LookupError``.
    """

    def __init__(
        self,
        fetch: Callable[[list[K]], Awaitable[Mapping[K, V | BaseException]]],
        *,
        max_batch: int | None = None,
        group: Callable[[K], Hashable] | None = None,
        window: float = 0.0,
        missing: Callable[[K], V] | None = None,
        name: str = "coalescer",
    ) -> None:
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 or None, got {max_batch!r}")
        self._fetch = fetch
        self.max_batch = max_batch
        self._group = group
        self.window = window
        self._missing = missing
        self.name = name
        #: the questions of the round being collected; ``None`` while no round is scheduled
        self._pending: dict[K, list[asyncio.Future[V]]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks
        self.fetches = 0  # observable cost, for tests and benchmarks

    async def get(self, key: K) -> V:
        """The value of ``key``, fetched together with every other key asked about meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        if self._pending is None:  # a new round: questions asked while a fetch runs do not wait for it
            round_: dict[K, list[asyncio.Future[V]]] = {}
            self._pending = round_
            task = loop.create_task(self._flush(round_), name=f"spark-async-{self.name}")
            self._tasks.add(task)
            task.add_done_callback(lambda done: self._ended(done, round_))
        self._pending.setdefault(key, []).append(future)
        return await future

    async def get_many(self, keys: Iterable[K]) -> dict[K, V | BaseException]:
        """The value — or the error — of each of ``keys``, in one round of fetches."""
        unique = list(dict.fromkeys(keys))
        # gather, not one await after another: every exception is marked retrieved
        results = await asyncio.gather(*(self.get(key) for key in unique), return_exceptions=True)
        return dict(zip(unique, results, strict=True))

    def _batches(self, keys: list[K]) -> list[list[K]]:
        groups: dict[Hashable, list[K]] = {}
        for key in keys:
            groups.setdefault(self._group(key) if self._group else None, []).append(key)
        size = self.max_batch or max(1, len(keys))
        return [members[i:i + size] for members in groups.values() for i in range(0, len(members), size)]

    async def _flush(self, round_: dict[K, list[asyncio.Future[V]]]) -> None:
        """Answer one round of questions.

        A task starts one loop turn after it was created, so every question asked in the turn that
        created it (a gather of triggers) is here even without a window.
        """
        if self.window > 0:
            await asyncio.sleep(self.window)
        self._pending = None
        live = [key for key, futures in round_.items() if any(not f.done() for f in futures)]
        await asyncio.gather(*(self._answer(batch, round_) for batch in self._batches(live)))

    def _ended(self, task: asyncio.Task[None], round_: dict[K, list[asyncio.Future[V]]]) -> None:
        """However the round's task ended — even cancelled before it started — nobody of it waits on."""
        self._tasks.discard(task)
        if self._pending is round_:
            self._pending = None
        for futures in round_.values():
            for future in futures:
                future.cancel()  # a no-op for the futures already answered

    async def _answer(self, batch: list[K], waiting: dict[K, list[asyncio.Future[V]]]) -> None:
        self.fetches += 1
        try:
            answers: Mapping[K, V | BaseException] | BaseException = await self._fetch(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            answers = exc
        for key in batch:
            if isinstance(answers, BaseException):
                outcome: V | BaseException = answers
            elif key in answers:
                outcome = answers[key]
            elif self._missing is not None:
                outcome = self._missing(key)
            else:
                outcome = LookupError(f"{self.name}: the fetch did not answer for {key!r}")
            settle(waiting.get(key, ()), outcome)
