"""Coalesced polling: many triggers of one endpoint cost one list request per cycle.

``DictBackend`` is a complete, tiny implementation of the Backend protocol over a dict —
a real backend for the core to drive, not a patch of the core's own code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from airflow_spark_async.core.backend import Backend, JobStatus
from airflow_spark_async.core.errors import JobNotFoundError, RateLimitedError, ServerError
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.core.states import JobState
from airflow_spark_async.core.watcher import Watcher


class DictBackend(Backend):
    name = "dict"

    def __init__(self, *, can_list: bool = True) -> None:
        self.states: dict[str, JobState] = {}
        self.can_list = can_list
        self.calls: list[str] = []
        self.list_failures: list[Exception] = []
        self.status_failures: list[Exception] = []

    @classmethod
    async def from_connection(cls, conn: Any, options: Mapping[str, Any]) -> DictBackend:
        return cls()

    @property
    def watch_key(self) -> str:
        return "dict://"

    async def submit(self, job: SparkJob, *, key: str) -> JobStatus:
        job_id = str(len(self.states))
        self.states[job_id] = JobState.RUNNING
        return JobStatus(job_id, JobState.RUNNING, "RUNNING")

    async def status(self, job_id: str) -> JobStatus:
        self.calls.append(f"status:{job_id}")
        if self.status_failures:
            raise self.status_failures.pop(0)
        if job_id not in self.states:
            raise JobNotFoundError(job_id)
        state = self.states[job_id]
        return JobStatus(job_id, state, state.name, message=f"detail of {job_id}")

    async def status_many(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus] | None:
        self.calls.append(f"list:{len(job_ids)}")
        if not self.can_list:
            return None
        if self.list_failures:
            raise self.list_failures.pop(0)
        return {j: JobStatus(j, self.states[j], self.states[j].name) for j in job_ids if j in self.states}

    async def cancel(self, job_id: str) -> None:
        self.states[job_id] = JobState.CANCELLED


async def _ask_all(watcher: Watcher, ids: list[str]) -> list[Any]:
    return await asyncio.gather(*(watcher.status(i) for i in ids), return_exceptions=True)


async def test_many_questions_in_one_window_cost_one_list_call() -> None:
    backend = DictBackend()
    backend.states = {str(i): JobState.RUNNING for i in range(200)}
    watcher = Watcher(backend)
    answers = await _ask_all(watcher, [str(i) for i in range(200)])
    assert [a.job_id for a in answers] == [str(i) for i in range(200)]
    assert backend.calls == ["list:200"]
    assert watcher.requests == 1


async def test_jobs_that_ended_are_asked_once_more_for_their_details() -> None:
    backend = DictBackend()
    backend.states = {"a": JobState.RUNNING, "b": JobState.FAILED}
    answers = await _ask_all(Watcher(backend), ["a", "b"])
    assert answers[1].message == "detail of b"
    assert backend.calls == ["list:2", "status:b"]


async def test_a_failing_list_falls_back_to_one_request_per_job() -> None:
    backend = DictBackend()
    backend.states = {"a": JobState.RUNNING, "b": JobState.RUNNING}
    backend.list_failures = [ServerError("boom")]
    answers = await _ask_all(Watcher(backend), ["a", "b"])
    assert all(isinstance(a, JobStatus) for a in answers)
    assert sorted(backend.calls) == ["list:2", "status:a", "status:b"]


async def test_a_rate_limited_list_is_not_followed_by_one_request_per_job() -> None:
    backend = DictBackend()
    backend.states = {"a": JobState.RUNNING, "b": JobState.RUNNING}
    backend.list_failures = [RateLimitedError("429", retry_after=0.1)]
    answers = await _ask_all(Watcher(backend), ["a", "b"])
    assert all(isinstance(a, RateLimitedError) for a in answers)
    assert backend.calls == ["list:2"]


async def test_unknown_and_unlisted_jobs_get_their_own_error() -> None:
    backend = DictBackend()
    backend.states = {"a": JobState.RUNNING}
    answers = await _ask_all(Watcher(backend), ["a", "gone"])
    assert isinstance(answers[0], JobStatus) and isinstance(answers[1], JobNotFoundError)


async def test_a_rate_limit_slows_down_every_trigger_of_the_endpoint() -> None:
    backend = DictBackend(can_list=False)
    backend.states = {"a": JobState.RUNNING}
    backend.status_failures = [RateLimitedError("429", retry_after=0.6)]
    watcher = Watcher(backend)
    first = await _ask_all(watcher, ["a"])
    assert isinstance(first[0], RateLimitedError)
    started = time.monotonic()
    await watcher.status("a")
    assert time.monotonic() - started >= 0.5, "the next request must wait for Retry-After"


async def test_a_trigger_that_is_cancelled_leaves_the_watcher_serving_others() -> None:
    backend = DictBackend()
    backend.states = {"a": JobState.RUNNING, "b": JobState.RUNNING}
    watcher = Watcher(backend)
    doomed = asyncio.create_task(watcher.status("a"))
    survivor = asyncio.create_task(watcher.status("b"))
    await asyncio.sleep(0)
    doomed.cancel()
    assert (await survivor).job_id == "b"
    with pytest.raises(asyncio.CancelledError):
        await doomed
