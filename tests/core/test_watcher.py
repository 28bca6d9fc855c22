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

from airflow_spark_async.core.backend import Backend, JobState, JobStatus
from airflow_spark_async.core.errors import JobNotFoundError, RateLimitedError, ServerError
from airflow_spark_async.core.runtime import Watcher
from airflow_spark_async.core.spec import SparkJob


class DictBackend(Backend):
    name = "dict"

    def __init__(self, *, can_list: bool = True) -> None:
        self.states: dict[str, JobState] = {}
        self.can_list = can_list
        self.calls: list[str] = []
        self.list_failures: list[Exception] = []
        self.status_failures: list[Exception] = []
        self.listed_errors: dict[str, Exception] = {}  # per-job errors the list answers with

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

    async def status_many(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus | Exception] | None:
        self.calls.append(f"list:{len(job_ids)}")
        if not self.can_list:
            return None
        if self.list_failures:
            raise self.list_failures.pop(0)
        listed: dict[str, JobStatus | Exception] = {
            j: JobStatus(j, self.states[j], self.states[j].name) for j in job_ids if j in self.states}
        return {**listed, **{j: e for j, e in self.listed_errors.items() if j in job_ids}}

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


async def test_a_failing_list_backs_every_trigger_off_instead_of_fanning_out() -> None:
    # Issue 9 defect 13: a 503 on the list is when the server struggles most; N single requests
    # (5,000 jobs / 16 at a time x 30 s timeouts) would take hours.
    backend = DictBackend()
    backend.states = {str(i): JobState.RUNNING for i in range(50)}
    backend.list_failures = [ServerError("boom")]
    answers = await _ask_all(Watcher(backend), [str(i) for i in range(50)])
    assert all(isinstance(a, ServerError) for a in answers)
    assert backend.calls == ["list:50"]


async def test_listed_jobs_are_answered_before_the_slow_fallback_finishes() -> None:
    backend = DictBackend()
    backend.states = {"a": JobState.RUNNING, "b": JobState.RUNNING}
    release = asyncio.Event()
    original = backend.status

    async def slow_status(job_id: str) -> JobStatus:
        await release.wait()
        return await original(job_id)

    backend.status = slow_status  # type: ignore[method-assign]
    watcher = Watcher(backend)
    listed = asyncio.create_task(watcher.status("a"))
    unlisted = asyncio.create_task(watcher.status("gone"))
    assert (await asyncio.wait_for(listed, 10)).job_id == "a", "a listed job must not wait for the fallback"
    assert not unlisted.done()
    release.set()
    with pytest.raises(JobNotFoundError):
        await unlisted


async def test_the_fallback_is_capped_per_cycle() -> None:
    backend = DictBackend(can_list=False)
    backend.states = {str(i): JobState.RUNNING for i in range(10)}
    watcher = Watcher(backend)
    watcher.fallback_per_cycle = 4
    watcher.leftover_delay = 0.2
    answers = await _ask_all(watcher, [str(i) for i in range(10)])
    assert all(isinstance(a, JobStatus) for a in answers)
    per_cycle = [c for c in backend.calls if c.startswith("list")]
    assert len(per_cycle) == 3, "10 jobs at 4 per cycle take three cycles"


async def test_a_finished_job_keeps_its_listed_state_when_its_details_cannot_be_read() -> None:
    backend = DictBackend()
    backend.states = {"a": JobState.RUNNING, "b": JobState.SUCCEEDED}
    backend.status_failures = [ServerError("detail page down")]
    answers = await _ask_all(Watcher(backend), ["a", "b"])
    assert answers[1].state is JobState.SUCCEEDED


@pytest.mark.parametrize("hint", [float("inf"), float("nan"), -5.0, 86400.0])
async def test_an_absurd_retry_after_never_holds_the_endpoint_longer_than_the_cap(hint: float) -> None:
    from airflow_spark_async.core.http import MAX_RETRY_AFTER

    watcher = Watcher(DictBackend())
    before = time.monotonic()
    watcher.slow_down(hint)
    assert watcher._not_before - before <= MAX_RETRY_AFTER + 1


def test_watchers_are_keyed_by_identity_and_never_swap_credentials() -> None:
    # Issue 9 defect 9: every new trigger used to swap the shared backend in: runs of team A
    # were then polled with team B's token.
    from airflow_spark_async.core.runtime import get_watcher

    class Tokened(DictBackend):
        def __init__(self, token: str) -> None:
            super().__init__()
            self.token = token

        def identity(self) -> str:
            return f"{self.watch_key}|{self.token}"

    async def main() -> None:
        a, b, a2 = Tokened("team-a"), Tokened("team-b"), Tokened("team-a")
        wa, wb = get_watcher(a), get_watcher(b)
        assert wa is not wb and wa.backend is a and wb.backend is b
        assert get_watcher(a2) is wa and wa.backend is a, "same identity: one watcher, its own backend"

    asyncio.run(main())


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


async def test_a_per_job_error_of_the_list_reaches_that_job_alone_without_another_request() -> None:
    backend = DictBackend()
    backend.states = {"0": JobState.RUNNING, "2": JobState.RUNNING}
    backend.listed_errors = {"1": JobNotFoundError("job 1 is unknown")}
    answers = await _ask_all(Watcher(backend), ["0", "1", "2"])
    assert [a.state for a in (answers[0], answers[2])] == [JobState.RUNNING, JobState.RUNNING]
    assert isinstance(answers[1], JobNotFoundError)
    assert backend.calls == ["list:3"], "the list already said what there is to say about job 1"
