"""Pages within a budget and many fetches at once: what a list costs, and what one failure hides."""

from __future__ import annotations

import asyncio

import pytest

from airflow_spark_async.core.errors import JobNotFoundError, ServerError
from airflow_spark_async.core.paging import Page, fetch_each, pages


class TokenList:
    """A list paged by token like Databricks' runs/list: ``size`` items a page."""

    def __init__(self, total: int, size: int) -> None:
        self.items, self.size, self.cursors = list(range(total)), size, []

    async def fetch(self, cursor: str | None) -> Page[int, str]:
        self.cursors.append(cursor)
        start = int(cursor or 0)
        end = start + self.size
        return Page(self.items[start:end], str(end) if end < len(self.items) else None)


async def test_every_page_is_read_in_order_until_there_is_no_next_cursor() -> None:
    listing = TokenList(total=7, size=3)
    read = [page.items async for page in pages(listing.fetch)]
    assert read == [[0, 1, 2], [3, 4, 5], [6]] and listing.cursors == [None, "3", "6"]


async def test_the_page_budget_bounds_the_requests() -> None:
    listing = TokenList(total=100, size=3)
    read = [page.items async for page in pages(listing.fetch, max_pages=2)]
    assert read == [[0, 1, 2], [3, 4, 5]] and len(listing.cursors) == 2
    assert [p async for p in pages(listing.fetch, max_pages=0)] == [] and len(listing.cursors) == 2


async def test_leaving_the_loop_requests_no_further_page() -> None:
    listing = TokenList(total=100, size=3)
    async for page in pages(listing.fetch, first="9"):
        if 10 in page.items:
            break
    assert listing.cursors == ["9"]


async def test_an_error_on_a_page_reaches_the_consumer() -> None:
    async def broken(cursor: str | None) -> Page[int, str]:
        raise ServerError("503")

    with pytest.raises(ServerError):
        [p async for p in pages(broken)]


async def test_each_item_gets_its_result_or_its_own_error_in_order() -> None:
    async def fetch(n: int) -> int:
        if n == 2:
            raise JobNotFoundError("gone")
        return n * 10

    results = await fetch_each([1, 2, 3], fetch, limit=2)
    assert [item for item, _ in results] == [1, 2, 3]
    assert results[0][1] == 10 and isinstance(results[1][1], JobNotFoundError) and results[2][1] == 30


async def test_at_most_limit_fetches_run_at_once() -> None:
    running, peak = 0, 0

    async def fetch(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        running -= 1
        return n

    assert [r for _, r in await fetch_each(range(10), fetch, limit=3)] == list(range(10))
    assert peak == 3


async def test_a_bug_is_not_tolerated() -> None:
    async def fetch(n: int) -> int:
        raise TypeError("a bug")

    with pytest.raises(TypeError):
        await fetch_each([1], fetch, limit=1)
