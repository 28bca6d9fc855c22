"""Reading many things from an API: the pages of a list within a budget, and many items at once.

Why in core: every REST backend lists (Databricks' ``runs/list`` and ``jobs/list`` with a page
token, Livy's ``GET /batches`` with an offset, EMR's ``Marker``) and fetches details of several
things at once (Databricks' per-task outputs, EMR's clusters). Written here once, the two
mistakes each copy made at some point are made nowhere: a list walked to its end on every poll
(a workspace with thousands of runs costs thousands of requests per cycle — hence the page
budget), and one failing item hiding the answers of the others (hence per-item errors).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Generic, TypeVar

from airflow_spark_async.core.errors import BackendError

__all__ = ["Page", "fetch_each", "pages"]

T = TypeVar("T")
R = TypeVar("R")
C = TypeVar("C")


@dataclasses.dataclass(frozen=True)
class Page(Generic[T, C]):
    """One page of a list: its items and the cursor of the next page (``None`` on the last).

    The cursor is whatever the API pages by: a page token, an offset, a marker.
    """

    items: Sequence[T]
    next: C | None = None


async def pages(
    fetch: Callable[[C | None], Awaitable[Page[T, C]]],
    *,
    max_pages: int | None = None,
    first: C | None = None,
) -> AsyncIterator[Page[T, C]]:
    """The pages ``fetch(cursor)`` returns, from ``first`` on, until one has no next cursor or
    ``max_pages`` were read.

    The consumer stops early by leaving its ``async for`` (every item it looks for was found): no
    further page is requested. Give a ``max_pages`` to anything that runs per poll — a list that
    keeps growing (or a server that keeps answering a next token) must not cost unbounded requests.
    """
    if max_pages is not None and max_pages < 1:
        return
    cursor, read = first, 0
    while True:
        page = await fetch(cursor)
        read += 1
        yield page
        if page.next is None or (max_pages is not None and read >= max_pages):
            return
        cursor = page.next


async def fetch_each(
    items: Iterable[T],
    fetch: Callable[[T], Awaitable[R]],
    *,
    limit: int,
    tolerate: tuple[type[BaseException], ...] = (BackendError,),
) -> list[tuple[T, R | BaseException]]:
    """``fetch(item)`` for every item, at most ``limit`` at once, in the order of ``items``.

    An item whose fetch raises one of ``tolerate`` (by default a backend's errors: a 404, a 503)
    gets its exception instead of a result, so one bad item never hides the others; anything else
    (a bug) and cancellation propagate.
    """
    semaphore = asyncio.Semaphore(limit)

    async def one(item: T) -> tuple[T, R | BaseException]:
        async with semaphore:
            try:
                return item, await fetch(item)
            except tolerate as exc:
                return item, exc

    return list(await asyncio.gather(*(one(item) for item in items)))
