"""The conformance suite: one set of behaviours every backend must show, run against each.

Every test drives the real operator and trigger classes against a real server through
fault proxies (see ``harness.py``); none patches our own code.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from airflow.sdk.execution_time.xcom import XCom

from airflow_spark_async.core import trigger as trigger_module
from airflow_spark_async.core.airflow_versions import TaskDeferred
from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.http import close_loop_sessions
from airflow_spark_async.core.operator import SparkJobFailed, SparkJobTimeout
from airflow_spark_async.core.trigger import EVENT_VERSION
from tests.conformance.harness import (
    FakeTI,
    Harness,
    cancel,
    context,
    defer,
    finalize,
    kill_while_watching,
    new_ti,
    rebuild,
    run_to_end,
    run_trigger,
)
from tests.servers.fault_proxy import Fault


def _wait_remote(harness: Harness, job_id: str, states: set[str], timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = harness.remote_state(job_id)
        if state in states:
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} stayed {state}, expected one of {states}")


def test_success_resumes_with_the_job_id(harness: Harness) -> None:
    op = harness.make_operator("ok", "succeed", 2)
    ti = new_ti("ok")
    result, events = run_to_end(op, ti)
    assert events[0]["status"] == "success" and events[0]["v"] == EVENT_VERSION
    assert result == harness.result_of(ti.xcoms["job_id"]) and ti.xcoms["job_id"] == events[0]["job_id"]
    assert harness.count("POST", harness.submit_path) == 1


def test_failure_carries_the_backend_error(harness: Harness, capfd: pytest.CaptureFixture[str]) -> None:
    op = harness.make_operator("bad", "fail", 1)
    with pytest.raises(SparkJobFailed) as failure:
        run_to_end(op, new_ti("bad"))
    assert harness.failure_text in str(failure.value)
    if harness.driver_log:  # the driver's own output reaches the task log
        assert "failing on purpose" in capfd.readouterr().out


@pytest.mark.parametrize(
    "faults",
    [
        [Fault("429", count=2, retry_after=1)],
        [Fault("503", count=2)],
        [Fault("reset", count=2)],
        [Fault("malformed", count=1), Fault("500", count=1)],
    ],
    ids=["429-retry-after", "503", "connection-reset", "malformed-then-500"],
)
def test_transient_errors_back_off_then_succeed(harness: Harness, faults: list[Fault]) -> None:
    op = harness.make_operator("flaky", "succeed", 3, poll_policy={"backoff_base": 0.2, "backoff_max": 1.0})
    ti = new_ti("flaky")
    trigger = rebuild(defer(op, ti))
    for proxy in harness.proxies:
        proxy.inject(*[Fault(f.kind, f.count, f.path, f.retry_after, f.delay) for f in faults])
    events = run_trigger(trigger)
    injected = sum(len(p.injected) for p in harness.proxies)
    assert injected >= 2, "the faults must actually have been served"
    assert [e["status"] for e in events] == ["success"]
    assert op.execute_complete({"ti": ti}, events[0]) == harness.result_of(events[0]["job_id"])


def test_error_budget_exhausted_hands_back_to_worker_which_redefers(harness: Harness) -> None:
    # 120 s: the job must still run when the worker re-checks, however loaded the machine is
    op = harness.make_operator("unreachable", "succeed", 120, poll_policy={"backoff_base": 0.1, "error_budget": 2})
    ti = new_ti("unreachable")
    trigger = rebuild(defer(op, ti))
    for proxy in harness.proxies:
        proxy.inject(Fault("503", count=3))
    events = run_trigger(trigger)
    assert events[0]["status"] == "unreachable"
    for proxy in harness.proxies:
        proxy.clear()
    # the job still runs, so the resume must defer again rather than fail the task
    with pytest.raises(TaskDeferred) as again:
        op.execute_complete({"ti": ti}, events[0])
    assert again.value.trigger.job_id == events[0]["job_id"]  # type: ignore[attr-defined]
    assert harness.count("POST", harness.submit_path) == 0, "re-deferring must not resubmit"
    cancel(again.value.trigger)  # type: ignore[arg-type]


def test_links_asked_at_the_end_of_each_task_process_never_read_an_xcom_nobody_pushed(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow asks every extra link for its value at the end of each task process and stores the
    answer. A link that reads an XCom no process pushed gets a 404 from the API, which Airflow logs
    at error level ("XCom not found", once per link and process): the deferring process must know
    its links without asking, and the resuming one may ask only for what the first one stored."""
    ti = new_ti("links")
    asked: list[str] = []

    def get_value(*, key: str, ti_key: FakeTI) -> object:
        assert key in ti_key.xcoms, f"asked for the XCom {key!r}, which no process pushed: a 404, logged as an error"
        asked.append(key)
        return ti_key.xcoms[key]

    monkeypatch.setattr(XCom, "get_value", staticmethod(get_value))
    op = harness.make_operator("links", "succeed", 1)
    trigger = rebuild(defer(op, ti))
    first = finalize(op, ti)
    assert asked == [], "the deferring process knows every link it pushed"
    [event] = run_trigger(trigger)
    resumed = harness.make_operator("links", "succeed", 1)  # the resuming process parses the DAG again
    resumed.execute_complete(context(resumed, ti), event)
    second = finalize(resumed, ti)
    assert {key for key, url in first.items() if url} <= {key for key, url in second.items() if url}, \
        "a link pushed before the deferral keeps its URL"
    if harness.make_sensor is not None:  # a sensor on the job, deferring and resuming the same way
        sensor_ti = new_ti("links_sensor")
        sensor = harness.make_sensor("links_sensor", event["job_id"], deferrable=True)
        [sensor_event] = run_trigger(rebuild(defer(sensor, sensor_ti)))
        finalize(sensor, sensor_ti)
        again = harness.make_sensor("links_sensor", event["job_id"], deferrable=True)
        again.execute_complete(context(again, sensor_ti), sensor_event)
        finalize(again, sensor_ti)


def test_deadline_cancels_the_job_and_fails_the_task(harness: Harness) -> None:
    op = harness.make_operator("slow", "succeed", 120, job_timeout=4)
    ti = new_ti("slow")
    trigger = rebuild(defer(op, ti))
    assert trigger.deadline is not None and trigger.deadline - time.time() < 5
    events = run_trigger(trigger)
    assert events[0]["status"] == "timeout"
    with pytest.raises(SparkJobTimeout):
        op.execute_complete({"ti": ti}, events[0])
    assert harness.cancels() >= 1
    _wait_remote(harness, events[0]["job_id"], harness.cancelled_states)


def test_deadline_survives_a_rebuild(harness: Harness) -> None:
    """A triggerer restart rebuilds the trigger from kwargs: the deadline must not move."""
    op = harness.make_operator("restart", "succeed", 60, job_timeout=30)
    trigger = defer(op, new_ti("restart"))
    time.sleep(1.1)
    assert rebuild(trigger).deadline == trigger.deadline
    cancel(trigger)


def test_serialize_round_trip_rebuilds_an_equal_trigger(harness: Harness) -> None:
    op = harness.make_operator("ser", "succeed", 1, job_timeout=600)
    trigger = defer(op, new_ti("ser"))
    clone = rebuild(trigger)
    assert clone == trigger and clone.serialize() == trigger.serialize()
    _classpath, kwargs = trigger.serialize()
    assert not any(word in str(kwargs).lower() for word in ("password", "token", "secret"))
    run_trigger(clone)


def test_on_kill_cancels_the_job_once_the_user_marked_the_task_failed(harness: Harness) -> None:
    op = harness.make_operator("kill", "succeed", 120)
    trigger = rebuild(defer(op, new_ti("kill")))
    kill_while_watching(trigger, "failed")
    assert harness.cancels() == 1
    _wait_remote(harness, trigger.job_id, harness.cancelled_states)


@pytest.mark.parametrize("task_state", ["deferred", None], ids=["moved", "state-unknown"])
def test_on_kill_leaves_the_job_alone_when_the_trigger_moved_or_the_state_is_unknown(
    harness: Harness, task_state: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trigger_module, "STATE_LOOKUP_BUDGET", 1.0)
    op = harness.make_operator("moved", "succeed", 120)
    trigger = rebuild(defer(op, new_ti("moved")))
    kill_while_watching(trigger, task_state)
    assert harness.cancels() == 0
    cancel(trigger)


def test_on_kill_after_the_event_does_not_cancel(harness: Harness) -> None:
    op = harness.make_operator("fired", "succeed", 1)
    trigger = rebuild(defer(op, new_ti("fired")))

    async def run_then_kill() -> None:
        [event async for event in trigger.run()]
        await trigger.on_kill()
        await close_loop_sessions()

    asyncio.run(run_then_kill())
    assert harness.cancels() == 0


def test_retry_reattaches_to_a_running_job(harness: Harness) -> None:
    ti = new_ti("retry")
    first = defer(harness.make_operator("retry", "succeed", 120), ti)  # still running at the retry
    ti2 = FakeTI(task_id=ti.task_id, run_id=ti.run_id, try_number=2)
    second = defer(harness.make_operator("retry", "succeed", 120), ti2)
    assert second.job_id == first.job_id
    assert harness.count("POST", harness.submit_path) == 1
    cancel(first)


def test_retry_resubmits_after_a_failed_job_and_never_reports_it(harness: Harness) -> None:
    ti = new_ti("again")
    with pytest.raises(SparkJobFailed):
        run_to_end(harness.make_operator("again", "fail", 1), ti)
    failed_id = ti.xcoms["job_id"]
    ti2 = FakeTI(task_id=ti.task_id, run_id=ti.run_id, try_number=2)
    result, events = run_to_end(harness.make_operator("again", "succeed", 1), ti2)
    assert result != harness.result_of(failed_id) and events[0]["job_id"] != failed_id
    assert harness.count("POST", harness.submit_path) == 2


def test_missing_connection_fails_before_submitting(harness: Harness) -> None:
    op = harness.make_operator("noconn", "succeed", 1, conn_id="no_such_connection_here")
    with pytest.raises(ConfigurationError, match="no_such_connection_here"):
        op.execute({"ti": new_ti("noconn")})  # type: ignore[arg-type]
    assert harness.count("POST", harness.submit_path) == 0


@pytest.mark.parametrize("interval", [0, -1, float("nan")])
def test_poll_interval_must_be_positive(harness: Harness, interval: float) -> None:
    with pytest.raises(ConfigurationError, match="interval"):
        harness.make_operator("badpoll", "succeed", 1, poll_interval=interval)


def test_unknown_backend_option_is_rejected(harness: Harness) -> None:
    with pytest.raises(ConfigurationError):
        harness.make_operator("badopt", "succeed", 1, backend_options={"no_such_option": 1})
