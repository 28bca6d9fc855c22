"""Concurrent questions become few requests, and every caller gets its own answer (core/coalescer.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from airflow_spark_async.core.coalescer import Coalescer
from airflow_spark_async.core.errors import JobNotFoundError, ServerError


class _Api:
    """A list call that answers ``value-<key>``, knows no key starting with ``gone``, and fails whole
    calls containing a key listed in ``fail``; it records every call it got."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.fail: set[str] = set()
        self.hold: asyncio.Event | None = None
        self.called = asyncio.Event()

    async def fetch(self, keys: list[str]) -> Mapping[str, str | BaseException]:
        self.calls.append(list(keys))
        self.called.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.fail & set(keys):
            raise ServerError("503 on the list")
        return {key: JobNotFoundError(key) if key.startswith("gone") else f"value-{key}" for key in keys}


async def test_questions_of_one_loop_turn_share_calls_of_at_most_max_batch_keys() -> None:
    api = _Api()
    coalescer: Coalescer[str, str] = Coalescer(api.fetch, max_batch=10)
    keys = [f"s{i}" for i in range(25)]
    assert await asyncio.gather(*(coalescer.get(k) for k in keys)) == [f"value-{k}" for k in keys]
    assert sorted(len(call) for call in api.calls) == [5, 10, 10] and coalescer.fetches == 3


async def test_the_same_key_asked_twice_is_fetched_once() -> None:
    api = _Api()
    coalescer: Coalescer[str, str] = Coalescer(api.fetch)
    assert await asyncio.gather(coalescer.get("a"), coalescer.get("a")) == ["value-a", "value-a"]
    assert api.calls == [["a"]]


async def test_keys_of_different_groups_never_share_a_call() -> None:
    calls: list[list[tuple[str, str]]] = []

    async def list_steps(keys: list[tuple[str, str]]) -> Mapping[tuple[str, str], str | BaseException]:
        calls.append(keys)
        assert len({cluster for cluster, _ in keys}) == 1
        return {key: f"{key[0]}/{key[1]}" for key in keys}

    steps: Coalescer[tuple[str, str], str] = Coalescer(list_steps, group=lambda key: key[0], max_batch=2)
    keys = [("j-1", "s1"), ("j-2", "s1"), ("j-1", "s2"), ("j-1", "s3")]
    assert await asyncio.gather(*(steps.get(k) for k in keys)) == ["j-1/s1", "j-2/s1", "j-1/s2", "j-1/s3"]
    assert sorted(map(len, calls)) == [1, 1, 2]


async def test_a_per_key_error_reaches_only_the_callers_of_that_key() -> None:
    coalescer: Coalescer[str, str] = Coalescer(_Api().fetch)
    answers = await coalescer.get_many(["a", "gone-1", "b"])
    assert answers["a"] == "value-a" and answers["b"] == "value-b"
    assert isinstance(answers["gone-1"], JobNotFoundError)
    with pytest.raises(JobNotFoundError):
        await coalescer.get("gone-2")


async def test_a_failed_fetch_fails_its_own_batch_only() -> None:
    api = _Api()
    api.fail = {"bad"}
    coalescer: Coalescer[str, str] = Coalescer(api.fetch, max_batch=2)
    answers = await coalescer.get_many(["bad", "x", "y", "z"])
    assert isinstance(answers["bad"], ServerError) and isinstance(answers["x"], ServerError)
    assert answers["y"] == "value-y" and answers["z"] == "value-z"


async def test_a_key_the_fetch_left_out_gets_missing_or_a_lookup_error() -> None:
    async def answers_nothing(keys: list[str]) -> Mapping[str, str | BaseException | None]:
        return {}

    assert await Coalescer(answers_nothing, missing=lambda key: None).get("a") is None
    with pytest.raises(LookupError, match="did not answer for 'a'"):
        await Coalescer(answers_nothing, name="steps").get("a")


async def test_questions_asked_during_a_slow_fetch_do_not_wait_for_it() -> None:
    api = _Api()
    api.hold = asyncio.Event()
    coalescer: Coalescer[str, str] = Coalescer(api.fetch)
    slow = asyncio.ensure_future(coalescer.get("slow"))
    await asyncio.wait_for(api.called.wait(), timeout=30)
    api.hold = None  # the next call answers at once
    assert await asyncio.wait_for(coalescer.get("fast"), timeout=30) == "value-fast"
    assert not slow.done()
    slow.cancel()


async def test_a_cancelled_caller_leaves_and_a_key_nobody_awaits_is_not_fetched() -> None:
    api = _Api()
    coalescer: Coalescer[str, str] = Coalescer(api.fetch, window=0.05)
    leaving = asyncio.ensure_future(coalescer.get("left"))
    staying = asyncio.ensure_future(coalescer.get("stays"))
    await asyncio.sleep(0)
    leaving.cancel()
    assert await asyncio.wait_for(staying, timeout=30) == "value-stays"
    assert api.calls == [["stays"]]


async def test_no_caller_is_left_waiting_when_the_fetching_task_is_cancelled() -> None:
    """Cancelled while collecting (even before its task started) or while fetching: the callers of
    the round are cancelled too, and a new round starts for the next question."""
    for hold_in_fetch in (False, True):
        api = _Api()
        api.hold = asyncio.Event() if hold_in_fetch else None
        coalescer: Coalescer[str, str] = Coalescer(api.fetch, window=0 if hold_in_fetch else 60)
        caller = asyncio.ensure_future(coalescer.get("a"))
        await asyncio.sleep(0)  # the caller asks; the round's task is created, perhaps not started
        if hold_in_fetch:
            await asyncio.wait_for(api.called.wait(), timeout=30)
        for task in asyncio.all_tasks():
            if task.get_name() == "spark-async-coalescer":
                task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(caller, timeout=30)
        api.hold = None
        coalescer.window = 0
        assert await asyncio.wait_for(coalescer.get("b"), timeout=30) == "value-b"
