"""Issue 9's defects in the core, one regression test each, against a small in-memory backend.

``MemBackend`` implements the whole Backend protocol over a dict (jobs carry their key, like a
Livy batch name); the operator and trigger under test are the package's real classes, driven
the way Airflow drives them: ``execute`` until it defers, serialize/rebuild the trigger, run it
to its one event, ``execute_complete``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import importlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest

from airflow_spark_async.core import trigger as trigger_module
from airflow_spark_async.core.airflow_versions import TaskDeferred
from airflow_spark_async.core.backend import (
    Backend,
    JobState,
    JobStatus,
    job_key,
    job_key_from_context,
    key_family,
    parse_key,
    split_statuses,
)
from airflow_spark_async.core.errors import AuthError, ConnectionFailed, JobNotFoundError, RateLimitedError
from airflow_spark_async.core.http import MAX_RETRY_AFTER, parse_retry_after
from airflow_spark_async.core.ledger import MemoryLedger, read_entry
from airflow_spark_async.core.operator import SparkJobFailed, SparkJobOperator, SparkJobTimeout
from airflow_spark_async.core.sensor import SparkJobSensor
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.core.trigger import SparkJobTrigger
from tests.conformance import harness

CONN = "asa_mem"
os.environ[f"AIRFLOW_CONN_{CONN.upper()}"] = json.dumps({"conn_type": "http", "host": "mem"})


@dataclasses.dataclass
class Job:
    id: str
    key: str
    state: JobState = JobState.RUNNING


class MemBackend(Backend[SparkJob]):
    """Jobs in a dict; ``fail`` maps a method name to errors it raises next (one per call)."""

    name: ClassVar[str] = "mem"
    supports_find_by_key: ClassVar[bool] = True
    world: ClassVar[MemBackend | None] = None

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.fail: dict[str, list[Exception]] = {}
        self.cancelled: list[str] = []
        self.submits = 0
        self.lose_submit_answer = False

    @classmethod
    async def from_connection(cls, conn: Any, options: Mapping[str, Any]) -> MemBackend:
        assert cls.world is not None
        return cls.world

    @property
    def watch_key(self) -> str:
        return "mem://"

    def _maybe_fail(self, method: str) -> None:
        if self.fail.get(method):
            raise self.fail[method].pop(0)

    def _st(self, job: Job) -> JobStatus:
        return JobStatus(job.id, job.state, job.state.name, key=job.key)

    async def submit(self, request: SparkJob, *, key: str, attempt: int) -> JobStatus:
        self._maybe_fail("submit")
        self.submits += 1
        new = Job(str(len(self.jobs) + 1), key)
        self.jobs[new.id] = new
        if self.lose_submit_answer:
            self.lose_submit_answer = False
            raise ConnectionFailed("connection reset after the server accepted the job")
        return self._st(new)

    async def status(self, job_id: str) -> JobStatus:
        self._maybe_fail("status")
        if job_id not in self.jobs:
            raise JobNotFoundError(f"no job {job_id}")
        return self._st(self.jobs[job_id])

    async def find_jobs(self, family: str) -> Sequence[JobStatus]:
        self._maybe_fail("find_jobs")
        return [self._st(j) for j in reversed(self.jobs.values()) if key_family(j.key) == family]

    async def cancel(self, job_id: str, *, key: str | None) -> None:
        self._maybe_fail("cancel")
        self.cancelled.append(job_id)
        job = self.jobs.get(job_id)
        if job and not job.state.is_terminal:
            job.state = JobState.CANCELLED

    def running(self) -> list[Job]:
        return [j for j in self.jobs.values() if not j.state.is_terminal]


class LedgerMemBackend(MemBackend):
    """The same, for an API that cannot look keys up: the core's ledger records the job."""

    supports_find_by_key: ClassVar[bool] = False


class MemTrigger(SparkJobTrigger):
    backend_class = MemBackend
    task_state: ClassVar[str | None] = "deferred"

    async def read_task_state(self) -> str | None:
        return type(self).task_state


class LedgerMemTrigger(MemTrigger):
    backend_class = LedgerMemBackend


class MemOperator(SparkJobOperator):
    trigger_class = MemTrigger
    default_conn_id = CONN


class LedgerMemOperator(MemOperator):
    trigger_class = LedgerMemTrigger


@dataclasses.dataclass
class FakeTask:
    retries: int = 3


@dataclasses.dataclass
class FakeTI(harness.FakeTI):
    """The conformance suite's task instance, with what a key's generation and the deadline read."""

    dag_id: str = "d"
    task_id: str = "t"
    max_tries: int = 3
    task: FakeTask = dataclasses.field(default_factory=FakeTask)
    start_date: dt.datetime | None = None


@dataclasses.dataclass
class FakeDagRun:
    start_date: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    run_after: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def ctx(ti: FakeTI | None = None, dag_run: FakeDagRun | None = None) -> dict[str, Any]:
    return {"ti": ti or FakeTI(), "dag_run": dag_run or FakeDagRun()}


@pytest.fixture(autouse=True)
def world() -> MemBackend:
    MemBackend.world = MemBackend()
    MemTrigger.task_state = "deferred"
    return MemBackend.world


def op(cls: type[MemOperator] = MemOperator, **kwargs: Any) -> MemOperator:
    return cls(task_id="t", job=SparkJob(application="app.py"), poll_interval=1.0, deferrable=True,
               poll_policy={"backoff_base": 0.01, "backoff_max": 0.05, "error_budget": 3}, **kwargs)


def defer(operator: MemOperator, context: dict[str, Any]) -> SparkJobTrigger:
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)  # type: ignore[arg-type]
    return rebuild(deferred.value.trigger)  # type: ignore[arg-type]


def rebuild(trigger: SparkJobTrigger) -> SparkJobTrigger:
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))


def events_of(trigger: SparkJobTrigger, *, timeout: float = 30) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [e.payload async for e in trigger.run()]

    return asyncio.run(asyncio.wait_for(collect(), timeout))


# -- defect 1: keys -------------------------------------------------------------------------------


def test_a_recreated_dag_run_gets_another_key_and_never_reattaches_to_the_old_job(world: MemBackend) -> None:
    first = ctx(dag_run=FakeDagRun(start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)))
    defer(op(), first)
    world.jobs["1"].state = JobState.SUCCEEDED  # weeks ago, the old run's job succeeded
    recreated = ctx(dag_run=FakeDagRun(start_date=dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)))
    assert job_key_from_context(recreated) != job_key_from_context(first)
    assert key_family(job_key_from_context(recreated)) != key_family(job_key_from_context(first))
    trigger = defer(op(), recreated)
    assert trigger.job_id == "2" and world.submits == 2, "a new job, not the old run's success"


def test_the_deployment_salt_separates_two_deployments(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = job_key_from_context(ctx())
    monkeypatch.setenv("AIRFLOW__AIRFLOW_SPARK_ASYNC__DEPLOYMENT_SALT", "prod-eu")
    assert job_key_from_context(ctx()) != mine


def test_retries_share_a_key_and_a_clear_changes_its_generation() -> None:
    retry = ctx(FakeTI(try_number=2, max_tries=3))
    assert job_key_from_context(retry) == job_key_from_context(ctx())
    cleared = ctx(FakeTI(try_number=5, max_tries=7))  # cleared after try 4: max_tries = 4 + retries
    a, b = parse_key(job_key_from_context(ctx())), parse_key(job_key_from_context(cleared))
    assert a and b and a.family == b.family and (a.generation, b.generation) == (1, 5)


def test_a_retry_reattaches_to_the_running_job_of_the_same_key(world: MemBackend) -> None:
    defer(op(), ctx())
    again = defer(op(), ctx(FakeTI(try_number=2)))
    assert again.job_id == "1" and world.submits == 1


# -- defect 6: clear means restart -------------------------------------------------------------------


def test_a_clear_cancels_the_old_job_and_submits_a_new_one(world: MemBackend) -> None:
    defer(op(), ctx())
    after_clear = defer(op(), ctx(FakeTI(try_number=2, max_tries=4)))  # generation 2
    assert after_clear.job_id == "2"
    assert world.cancelled == ["1"] and [j.id for j in world.running()] == ["2"]


def test_a_job_being_cancelled_is_never_reattached_to(world: MemBackend) -> None:
    defer(op(), ctx())
    world.jobs["1"].state = JobState.CANCELLING
    again = defer(op(), ctx(FakeTI(try_number=2)))
    assert again.job_id == "2"


# -- defect 7: submit then record -------------------------------------------------------------------


def test_a_lost_submit_answer_is_found_by_key_instead_of_submitting_twice(world: MemBackend) -> None:
    world.lose_submit_answer = True
    trigger = defer(op(), ctx())
    assert trigger.job_id == "1" and world.submits == 1


def test_the_ledger_records_intent_before_submitting() -> None:
    ledger = MemoryLedger()
    seen: list[Any] = []
    world = MemBackend.world = LedgerMemBackend()
    original = world.submit

    async def submit(request: SparkJob, *, key: str, attempt: int) -> JobStatus:
        seen.append(read_entry(ledger, key_family(key), "mem"))
        return await original(request, key=key, attempt=attempt)

    world.submit = submit  # type: ignore[method-assign]
    trigger = defer(op(LedgerMemOperator, ledger=ledger), ctx())
    assert seen[0] is not None and seen[0].job_id is None, "intent first"
    entry = read_entry(ledger, key_family(trigger.key or ""), "mem")
    assert entry is not None and entry.job_id == trigger.job_id


def test_a_failed_ledger_write_after_submit_cancels_the_job() -> None:
    class FlakyLedger(MemoryLedger):
        writes = 0

        def remember(self, key: str, backend: str, job_id: str) -> None:
            self.writes += 1
            if self.writes == 2:
                raise RuntimeError("API server gone")
            super().remember(key, backend, job_id)

    world = MemBackend.world = LedgerMemBackend()
    with pytest.raises(RuntimeError):
        op(LedgerMemOperator, ledger=FlakyLedger()).execute(ctx())  # type: ignore[arg-type]
    assert world.cancelled == ["1"] and not world.running()


def test_two_racing_tries_converge_on_the_oldest_job(world: MemBackend) -> None:
    world.jobs["1"] = Job("1", job_key_from_context(ctx()))  # a zombie try submitted at the same instant
    original = world.find_jobs
    calls = 0

    async def blind_first(family: str) -> Sequence[JobStatus]:  # it was not visible yet on the first look
        nonlocal calls
        calls += 1
        return [] if calls == 1 else await original(family)

    world.find_jobs = blind_first  # type: ignore[method-assign]
    trigger = defer(op(), ctx())
    assert trigger.job_id == "1" and world.cancelled == ["2"]


# -- defect 4 and 14: deadlines ---------------------------------------------------------------------


def test_a_job_that_succeeded_while_the_triggerer_was_down_is_a_success(world: MemBackend) -> None:
    trigger = defer(op(job_timeout=60), ctx())
    world.jobs["1"].state = JobState.SUCCEEDED
    trigger = rebuild(trigger)
    trigger._kwargs["deadline"] = trigger.deadline = 1.0  # long past: the triggerer was down
    [event] = events_of(trigger)
    assert event["status"] == "success"


def test_the_worker_rechecks_a_timeout_before_cancelling(world: MemBackend) -> None:
    operator = op(job_timeout=60)
    trigger = defer(operator, ctx())
    world.jobs["1"].state = JobState.SUCCEEDED  # finished between the last poll and the resume
    timeout_event = {"status": "timeout", "backend": "mem", "job_id": "1", "key": trigger.key, "v": 2}
    assert operator.execute_complete(ctx(), timeout_event) == "1"  # type: ignore[arg-type]
    assert world.cancelled == []


def test_a_timeout_cancels_a_job_that_still_runs(world: MemBackend) -> None:
    operator = op(job_timeout=60)
    trigger = defer(operator, ctx())
    with pytest.raises(SparkJobTimeout):
        operator.execute_complete(ctx(), {"status": "timeout", "backend": "mem", "job_id": "1",  # type: ignore[arg-type]
                                          "key": trigger.key})
    assert world.cancelled == ["1"]


def test_the_deadline_counts_execution_timeout_from_the_try_start_and_fires_first() -> None:
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=30)
    trigger = defer(op(execution_timeout=dt.timedelta(hours=1)), ctx(FakeTI(start_date=started)))
    assert trigger.deadline is not None
    airflow_would_fire = started.timestamp() + 3600
    assert airflow_would_fire - 120 <= trigger.deadline < airflow_would_fire


# -- defect 5: Retry-After and a stuck watcher ----------------------------------------------------------


@pytest.mark.parametrize("header", ["inf", "nan", "-3", "86400", "1e400"])
def test_retry_after_is_validated_and_capped(header: str) -> None:
    value = parse_retry_after(header)
    assert value is None or 0 <= value <= MAX_RETRY_AFTER


def test_a_trigger_never_waits_on_a_stuck_endpoint_past_its_deadline(world: MemBackend,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    trigger = defer(op(job_timeout=60), ctx())
    never = asyncio.Event()

    async def hang(job_id: str) -> JobStatus:
        await never.wait()
        raise AssertionError("unreachable")

    world.status = hang  # type: ignore[method-assign]
    monkeypatch.setattr(trigger_module, "FINAL_POLL_GRACE", 0.5)
    import time

    trigger._kwargs["deadline"] = trigger.deadline = time.time() + 0.5
    [event] = events_of(trigger, timeout=20)
    assert event["status"] == "timeout"


def test_a_huge_retry_after_does_not_freeze_the_trigger(world: MemBackend) -> None:
    trigger = defer(op(), ctx())
    world.fail["status"] = [RateLimitedError("429", retry_after=float("inf")), RateLimitedError("429",
                                                                                                retry_after=86400)]
    world.jobs["1"].state = JobState.SUCCEEDED
    trigger.policy = dataclasses.replace(trigger.policy, backoff_max=0.05)
    import airflow_spark_async.core.retry as retry

    original = retry.MAX_RETRY_AFTER
    try:
        # the cap itself is what is under test: shrink it so the test need not wait 300 s
        retry.MAX_RETRY_AFTER = 0.2
        [event] = events_of(trigger, timeout=20)
    finally:
        retry.MAX_RETRY_AFTER = original
    assert event["status"] == "success"


# -- defects 3, 8, 10, 12: errors -----------------------------------------------------------------------


class BrokenBackend(MemBackend):
    @classmethod
    async def from_connection(cls, conn: Any, options: Mapping[str, Any]) -> MemBackend:
        raise RuntimeError("boom")


class BrokenTrigger(MemTrigger):
    backend_class = BrokenBackend


def test_the_trigger_ends_with_an_event_when_building_the_backend_fails() -> None:
    [event] = events_of(BrokenTrigger(conn_id=CONN, job_id="1"))
    assert event["status"] == "error" and event["reason"] == "internal" and "boom" in event["message"]


def test_a_401_reloads_the_connection_once_before_failing(world: MemBackend) -> None:
    trigger = defer(op(), ctx())
    world.fail["status"] = [AuthError("401 token expired")]
    world.jobs["1"].state = JobState.SUCCEEDED
    [event] = events_of(trigger)
    assert event["status"] == "success"


def test_a_permanent_looking_poll_error_is_rechecked_and_waits_again_while_the_job_runs(world: MemBackend) -> None:
    operator = op()
    trigger = defer(operator, ctx())
    world.fail["status"] = [JobNotFoundError("404 from a proxy")]
    [event] = events_of(trigger)
    assert event["status"] == "error" and event["reason"] == "not_found"
    with pytest.raises(TaskDeferred) as again:
        operator.execute_complete(ctx(), event)  # type: ignore[arg-type]
    assert again.value.trigger.job_id == "1" and again.value.trigger.recheck == 1  # type: ignore[attr-defined]
    assert world.cancelled == [] and world.submits == 1


def test_unreachable_with_a_failed_recheck_waits_again_instead_of_orphaning(world: MemBackend) -> None:
    operator = op()
    trigger = defer(operator, ctx())
    world.fail["status"] = [ConnectionFailed("reset")] * 4 + [ConnectionFailed("still down")]
    [event] = events_of(trigger)
    assert event["status"] == "unreachable"
    with pytest.raises(TaskDeferred) as again:
        operator.execute_complete(ctx(), event)  # type: ignore[arg-type]
    assert again.value.trigger.recheck == 1  # type: ignore[attr-defined]


def test_a_reused_job_id_is_never_reported_or_cancelled(world: MemBackend) -> None:
    operator = op()
    trigger = defer(operator, ctx())
    world.jobs["1"] = Job("1", job_key("other", "dag", "run"), JobState.SUCCEEDED)  # server restarted, id reused
    [event] = events_of(trigger)
    assert event["status"] == "error" and event["reason"] == "foreign"
    with pytest.raises(SparkJobFailed):
        operator.execute_complete(ctx(), event)  # type: ignore[arg-type]
    assert world.cancelled == []


def test_elapsed_counts_from_the_job_start_not_from_a_triggerer_restart(world: MemBackend) -> None:
    trigger = defer(op(), ctx())
    trigger._kwargs["started_at"] = trigger.started_at = trigger.started_at - 3600  # type: ignore[operator]
    world.jobs["1"].state = JobState.SUCCEEDED
    [event] = events_of(rebuild(trigger))
    assert event["elapsed"] >= 3600


# -- defects 2, 6, 17: on_kill ------------------------------------------------------------------------------


def _on_kill(trigger: SparkJobTrigger) -> None:
    asyncio.run(trigger.on_kill())


@pytest.mark.parametrize("state", ["deferred", "running", "scheduled", "queued", None])
def test_on_kill_never_cancels_a_job_a_live_try_or_another_triggerer_may_own(world: MemBackend,
                                                                            state: str | None) -> None:
    trigger = defer(op(), ctx())
    MemTrigger.task_state = state
    if state is None:
        trigger_module.STATE_LOOKUP_BUDGET, saved = 0.5, trigger_module.STATE_LOOKUP_BUDGET
    try:
        _on_kill(trigger)
    finally:
        if state is None:
            trigger_module.STATE_LOOKUP_BUDGET = saved
    assert world.cancelled == []


@pytest.mark.parametrize("state", ["failed", "success", "up_for_retry", "removed"])
def test_on_kill_cancels_once_the_task_left_its_try(world: MemBackend, state: str) -> None:
    trigger = defer(op(), ctx())
    MemTrigger.task_state = state
    _on_kill(trigger)
    assert world.cancelled == ["1"]


def test_on_kill_forgets_the_ledger_record_of_the_job_it_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_spark_async.core import ledger as ledger_module

    ledger = MemoryLedger()
    monkeypatch.setattr(ledger_module, "_default", ledger)
    world = MemBackend.world = LedgerMemBackend()
    trigger = defer(op(LedgerMemOperator), ctx())
    assert ledger.entries
    MemTrigger.task_state = "failed"
    _on_kill(trigger)
    assert world.cancelled == ["1"] and ledger.entries == {}


def _cancel_while_watching(trigger: SparkJobTrigger, world: MemBackend) -> None:
    """Cancel the trigger's ``run`` once it watches the job, as Airflow's triggerer cancels a trigger
    whose task a user acted on (every minor), that moved, or whose triggerer stops."""
    polled = asyncio.Event()
    status = world.status

    async def watched_status(job_id: str) -> JobStatus:
        polled.set()
        return await status(job_id)

    world.status = watched_status  # type: ignore[method-assign]

    async def scenario() -> None:
        running = asyncio.ensure_future(anext(trigger.run()))
        await asyncio.wait_for(polled.wait(), 30)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(running, 30)

    asyncio.run(scenario())


@pytest.mark.parametrize("state", ["failed", "success", "up_for_retry", "removed"])
def test_before_airflow_3_3_a_cancelled_trigger_cancels_the_job_of_a_task_that_left_its_try(
        world: MemBackend, monkeypatch: pytest.MonkeyPatch, state: str) -> None:
    """Airflow 3.0-3.2 call no trigger on_kill: the trigger's CancelledError is the user's action."""
    monkeypatch.setattr(trigger_module, "TRIGGER_ON_KILL", False)
    trigger = defer(op(), ctx())
    MemTrigger.task_state = state
    _cancel_while_watching(trigger, world)
    assert world.cancelled == ["1"]


@pytest.mark.parametrize("state", ["deferred", "running", "scheduled", "queued"])
def test_before_airflow_3_3_a_trigger_that_moved_or_stopped_leaves_the_job_running(
        world: MemBackend, monkeypatch: pytest.MonkeyPatch, state: str) -> None:
    monkeypatch.setattr(trigger_module, "TRIGGER_ON_KILL", False)
    trigger = defer(op(), ctx())
    MemTrigger.task_state = state
    _cancel_while_watching(trigger, world)
    assert world.cancelled == [] and world.running()


def test_from_airflow_3_3_only_on_kill_cancels_not_the_cancelled_error(
        world: MemBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """3.3 calls on_kill after a user action, so a cancel alone is left to it: no second cancel."""
    monkeypatch.setattr(trigger_module, "TRIGGER_ON_KILL", True)
    trigger = defer(op(), ctx())
    MemTrigger.task_state = "failed"
    _cancel_while_watching(trigger, world)
    assert world.cancelled == []


class HangingStateTrigger(MemTrigger):
    async def read_task_state(self) -> str | None:
        await asyncio.Event().wait()
        return None


def test_on_kill_with_a_hanging_state_lookup_fits_the_on_kill_limit(world: MemBackend) -> None:
    import time

    trigger = HangingStateTrigger(conn_id=CONN, job_id="1", key=job_key("d", "t", "r"))
    began = time.monotonic()
    _on_kill(trigger)
    assert time.monotonic() - began < 30 - trigger_module.CANCEL_BUDGET and world.cancelled == []


# -- defect 12: sensors wait again instead of failing at once ------------------------------------------


class MemSensor(SparkJobSensor):
    trigger_class = MemTrigger
    default_conn_id = CONN


def test_a_sensor_waits_again_after_unreachable_while_the_job_runs(world: MemBackend) -> None:
    world.jobs["1"] = Job("1", job_key("d", "t", "r"))
    sensor = MemSensor(task_id="watch", job_id="1", poke_interval=1)
    event = {"status": "unreachable", "backend": "mem", "job_id": "1", "message": "503 x 20"}
    with pytest.raises(TaskDeferred) as again:
        sensor.execute_complete(ctx(), event)  # type: ignore[arg-type]
    assert again.value.trigger.recheck == 1  # type: ignore[attr-defined]
    world.jobs["1"].state = JobState.SUCCEEDED
    assert sensor.execute_complete(ctx(), {**event, "recheck": 1}) == "1"  # type: ignore[arg-type]


# -- issue 10: a sensor's failure state is a failure, in the event too ------------------------------------


def _sensor_event(world: MemBackend, state: JobState, **sensor_args: Any) -> tuple[MemSensor, dict[str, Any]]:
    world.jobs["1"] = Job("1", job_key("d", "t", "r"), state)
    sensor = MemSensor(task_id="watch", job_id="1", poke_interval=1, **sensor_args)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(ctx())  # type: ignore[arg-type]
    [event] = events_of(rebuild(deferred.value.trigger))  # type: ignore[arg-type]
    return sensor, event


@pytest.mark.parametrize("state", [JobState.RUNNING, JobState.SUCCEEDED])
def test_a_sensor_failure_state_ends_the_watch_as_a_failure_and_fails_the_task(world: MemBackend,
                                                                               state: JobState) -> None:
    """A failure state that is not terminal (EMR's CANCEL_PENDING) or that the backend calls a success
    must never end the watch as "success": the event says failed, and the sensor fails."""
    sensor, event = _sensor_event(world, state, failure_states=[state.name])
    assert event["status"] == "failed" and event["backend_state"] == state.name
    with pytest.raises(SparkJobFailed, match=state.name):
        sensor.execute_complete(ctx(), event)  # type: ignore[arg-type]


def test_a_sensor_target_state_ends_the_watch_as_a_success(world: MemBackend) -> None:
    sensor, event = _sensor_event(world, JobState.RUNNING, target_states=["RUNNING"])
    assert event["status"] == "success"
    assert sensor.execute_complete(ctx(), event) == "1"  # type: ignore[arg-type]


def test_stored_kwargs_with_the_old_stop_states_still_load_and_stop_there(world: MemBackend) -> None:
    """Kwargs stored before target/failure states existed carry ``stop_states``: still a target."""
    world.jobs["1"] = Job("1", job_key("d", "t", "r"), JobState.RUNNING)
    trigger = MemTrigger(conn_id=CONN, job_id="1", owns_job=False, stop_states=["RUNNING"])
    assert trigger.stop_states == {"RUNNING"} and rebuild(trigger).serialize() == trigger.serialize()
    [event] = events_of(trigger)
    assert event["status"] == "success" and event["backend_state"] == "RUNNING"


# -- issue 10: the public hooks a backend implements ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MemRequest:
    """A backend's own request: a plain dataclass, not a SparkJob."""

    key: str
    attempt: int


class RequestMemBackend(MemBackend):
    requests: ClassVar[list[Any]] = []

    async def submit(self, request: Any, *, key: str, attempt: int) -> JobStatus:
        type(self).requests.append(request)
        return await super().submit(request, key=key, attempt=attempt)


class RequestMemTrigger(MemTrigger):
    backend_class = RequestMemBackend


class RequestMemOperator(MemOperator):
    """Every hook overridden, as a backend would."""

    trigger_class = RequestMemTrigger
    seen: ClassVar[list[str]] = []

    def build_request(self, context: Any, key: str, attempt: int) -> MemRequest:
        return MemRequest(key, attempt)

    def after_submit(self, context: Any, status: JobStatus) -> None:
        self.seen.append(f"after_submit {status.job_id}")

    def trigger_kwargs(self, job_id: str, **fields: Any) -> dict[str, Any]:
        return super().trigger_kwargs(job_id, **{**fields, "try_number": 42})

    def on_complete(self, context: Any, event: Any) -> str:
        self.seen.append(f"on_complete {event.job_id}")
        return f"done {event.job_id}"

    def on_failure(self, context: Any, event: Any) -> Any:  # returns instead of raising: still a failure
        self.seen.append(f"on_failure {event.job_id}")


@pytest.fixture
def request_world() -> MemBackend:
    RequestMemBackend.requests, RequestMemOperator.seen = [], []
    MemBackend.world = RequestMemBackend()
    return MemBackend.world


def test_the_request_is_built_with_this_tries_key_and_attempt_and_the_hooks_run_in_order(
        request_world: MemBackend) -> None:
    context = ctx(FakeTI(try_number=2))
    trigger = defer(op(RequestMemOperator), context)
    assert RequestMemBackend.requests == [MemRequest(job_key_from_context(context), 2)]
    assert trigger.try_number == 42, "the one place trigger kwargs are built was used"
    request_world.jobs[trigger.job_id].state = JobState.SUCCEEDED
    [event] = events_of(trigger)
    assert op(RequestMemOperator).execute_complete(context, event) == "done 1"  # type: ignore[arg-type]
    assert RequestMemOperator.seen == ["after_submit 1", "on_complete 1"]


def test_a_failed_job_fails_the_task_even_when_on_failure_returns(request_world: MemBackend) -> None:
    trigger = defer(op(RequestMemOperator), ctx())
    request_world.jobs[trigger.job_id].state = JobState.FAILED
    [event] = events_of(trigger)
    with pytest.raises(SparkJobFailed, match="ended FAILED"):
        op(RequestMemOperator).execute_complete(ctx(), event)  # type: ignore[arg-type]
    assert RequestMemOperator.seen[-1] == "on_failure 1"


def test_wait_for_termination_false_submits_and_returns_without_deferring(world: MemBackend) -> None:
    assert op(wait_for_termination=False).execute(ctx()) == "1"  # type: ignore[arg-type]
    assert world.running()[0].id == "1"


class ListingMemBackend(MemBackend):
    async def status_many(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus | Exception]:
        return {job_id: self._st(self.jobs[job_id]) if job_id in self.jobs else JobNotFoundError(job_id)
                for job_id in job_ids}


def test_status_many_may_answer_one_job_with_an_error_without_failing_the_others() -> None:
    world = ListingMemBackend()
    world.jobs["1"] = Job("1", "asa-x-1")
    raw: Mapping[str, Any] = asyncio.run(world.status_many(["1", "2"])) or {}
    statuses, errors = split_statuses(raw)
    assert set(statuses) == {"1"} and isinstance(errors["2"], JobNotFoundError)
