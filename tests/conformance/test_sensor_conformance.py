"""The sensor half of the conformance suite: what every backend's sensor must do.

A sensor watches a job someone else submitted, so each check first submits one through the
backend's operator (up to its deferral: the job then runs on its own) and points the sensor
at its id. The sensor is driven as the operators are (see ``harness.py``): ``execute`` until it
defers, rebuild the trigger from its kwargs, run it to its one event, ``execute_complete`` —
or, with ``deferrable=False``, poked on the "worker" until it decides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from airflow_spark_async.core.airflow_versions import TaskDeferred
from airflow_spark_async.core.operator import SparkJobFailed
from airflow_spark_async.core.sensor import SparkJobSensor
from airflow_spark_async.core.trigger import SparkJobTrigger
from tests.conformance.harness import Harness, cancel, defer, kill_while_watching, new_ti, rebuild, run_trigger
from tests.servers.fault_proxy import Fault


@pytest.fixture
def sensor_harness(harness: Harness) -> Iterator[Harness]:
    if harness.make_sensor is None:
        pytest.skip(f"{harness.name} has no sensor of its own (see its adapter in tests/conformance/backends/)")
    yield harness


def _submit(harness: Harness, kind: str, seconds: float) -> SparkJobTrigger:
    """Submit a job through the backend's operator; the trigger it deferred to names the job."""
    return defer(harness.make_operator("watched", kind, seconds), new_ti("watched"))


def _sensor(harness: Harness, task_id: str, job: SparkJobTrigger, **overrides: object) -> SparkJobSensor:
    assert harness.make_sensor is not None
    return harness.make_sensor(task_id, job.job_id, **overrides)


def _watch(sensor: SparkJobSensor) -> tuple[SparkJobTrigger, list[dict[str, object]]]:
    """The sensor's deferral, and the events of its rebuilt trigger run to the end."""
    trigger = rebuild(defer(sensor, new_ti(sensor.task_id)))
    return trigger, run_trigger(trigger)


def test_sensor_succeeds_when_the_job_reaches_a_target_state(sensor_harness: Harness) -> None:
    job = _submit(sensor_harness, "succeed", 2)
    sensor = _sensor(sensor_harness, "ok", job)
    _, events = _watch(sensor)
    assert [e["status"] for e in events] == ["success"]
    assert sensor.execute_complete({"ti": new_ti("ok")}, events[0]) == job.job_id
    assert sensor_harness.cancels() == 0, "a sensor never cancels what it watches"


def test_sensor_fails_when_the_job_reaches_a_failure_state(sensor_harness: Harness) -> None:
    job = _submit(sensor_harness, "fail", 1)
    sensor = _sensor(sensor_harness, "bad", job)
    _, events = _watch(sensor)
    with pytest.raises(SparkJobFailed):
        sensor.execute_complete({"ti": new_ti("bad")}, events[0])
    # the event is what the triggerer records and the UI shows: a failed job never ends a watch as success
    assert events[0]["status"] != "success", events[0]


def test_sensor_backs_off_through_transient_errors(sensor_harness: Harness) -> None:
    job = _submit(sensor_harness, "succeed", 3)
    sensor = _sensor(sensor_harness, "flaky", job)
    sensor.poll_policy = dataclasses.replace(sensor.poll_policy, backoff_base=0.2, backoff_max=1.0)
    trigger = rebuild(defer(sensor, new_ti("flaky")))
    for proxy in sensor_harness.proxies:
        proxy.inject(Fault("503", count=2))
    events = run_trigger(trigger)
    assert sum(len(p.injected) for p in sensor_harness.proxies) >= 2, "the faults must actually have been served"
    assert [e["status"] for e in events] == ["success"]


def test_sensor_re_defers_when_the_backend_is_unreachable(sensor_harness: Harness) -> None:
    job = _submit(sensor_harness, "succeed", 120)  # still running when the worker re-checks
    sensor = _sensor(sensor_harness, "unreachable", job)
    sensor.poll_policy = dataclasses.replace(sensor.poll_policy, backoff_base=0.1, error_budget=2)
    ti = new_ti("unreachable")
    trigger = rebuild(defer(sensor, ti))
    for proxy in sensor_harness.proxies:
        proxy.inject(Fault("503", count=3))
    events = run_trigger(trigger)
    assert [e["status"] for e in events] == ["unreachable"]
    for proxy in sensor_harness.proxies:
        proxy.clear()
    with pytest.raises(TaskDeferred) as again:
        sensor.execute_complete({"ti": ti}, events[0])
    assert again.value.trigger.job_id == trigger.job_id
    assert sensor_harness.cancels() == 0
    cancel(job)


@pytest.mark.parametrize("kind", ["succeed", "fail"])
def test_poke_mode_gives_the_same_outcomes(sensor_harness: Harness, kind: str) -> None:
    job = _submit(sensor_harness, kind, 2)
    sensor = _sensor(sensor_harness, "poke", job, deferrable=False, timeout=180)
    if kind == "succeed":
        sensor.execute({"ti": new_ti("poke")})  # type: ignore[arg-type]
    else:
        with pytest.raises(SparkJobFailed):
            sensor.execute({"ti": new_ti("poke")})  # type: ignore[arg-type]
    assert sensor_harness.cancels() == 0


def test_killing_the_sensor_never_cancels_the_job(sensor_harness: Harness) -> None:
    job = _submit(sensor_harness, "succeed", 120)
    trigger = rebuild(defer(_sensor(sensor_harness, "killed", job), new_ti("killed")))
    kill_while_watching(trigger, "failed")  # the user marked the sensor failed: an operator's would cancel
    assert sensor_harness.cancels() == 0
    assert sensor_harness.remote_state(job.job_id) not in sensor_harness.cancelled_states
    cancel(job)
