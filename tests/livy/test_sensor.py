"""``LivyBatchSensor``: the official ``LivySensor``'s meaning (wait for termination), deferred, with
configurable target and failure states, and a clear failure when Livy forgot the batch."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_spark_async.core.airflow_versions import TaskDeferred
from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.operator import SparkJobFailed
from airflow_spark_async.livy.sensors import LIVY_TERMINAL_STATES, LivyBatchSensor
from tests.conformance.harness import rebuild, run_trigger
from tests.livy.conftest import CONN, context
from tests.servers.livy_server import LivyServer, Step


def _batch(livy: LivyServer, *steps: Step) -> str:
    """A batch on the server, submitted by someone else (a plain POST, as another system would)."""
    import json
    import urllib.request

    livy.script(*steps)
    req = urllib.request.Request(f"{livy.url}/batches", data=json.dumps({"file": "/a.py"}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return str(json.load(resp)["id"])


def _wait_deferred(sensor: LivyBatchSensor) -> dict[str, Any]:
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context())
    trigger = rebuild(deferred.value.trigger)  # type: ignore[arg-type]
    assert trigger.serialize()[1]["owns_job"] is False, "a sensor never deletes the batch it watches"
    [event] = run_trigger(trigger)
    return event


def test_by_default_it_waits_for_termination_as_the_official_sensor_does(livy: LivyServer) -> None:
    batch_id = _batch(livy, Step("running", 0.5), Step("dead"))
    sensor = LivyBatchSensor(task_id="wait", batch_id=int(batch_id), livy_conn_id=CONN, poke_interval=0.2)
    assert sorted(sensor.target_states or ()) == sorted(LIVY_TERMINAL_STATES) == ["dead", "error", "killed", "success"]
    event = _wait_deferred(sensor)
    assert event["backend_state"] == "dead"
    assert sensor.execute_complete(context(), event) == batch_id
    assert livy.batch_state(batch_id) == "dead"


def test_target_success_fails_the_sensor_on_a_dead_batch(livy: LivyServer) -> None:
    batch_id = _batch(livy, Step("running", 0.3, ["Exception in thread main"]), Step("dead"))
    sensor = LivyBatchSensor(task_id="wait", batch_id=batch_id, livy_conn_id=CONN, poke_interval=0.2,
                             target_states=["success"])
    event = _wait_deferred(sensor)
    with pytest.raises(SparkJobFailed, match="dead"):
        sensor.execute_complete(context(), event)


def test_failure_states_stop_the_wait_at_once(livy: LivyServer) -> None:
    batch_id = _batch(livy, Step("running", 0.3), Step("killed"))
    sensor = LivyBatchSensor(task_id="wait", batch_id=batch_id, livy_conn_id=CONN, poke_interval=0.2,
                             failure_states=["killed"])
    assert "killed" not in (sensor.target_states or ())
    event = _wait_deferred(sensor)
    with pytest.raises(SparkJobFailed, match="killed"):
        sensor.execute_complete(context(), event)


def test_a_batch_livy_forgot_fails_the_sensor_instead_of_poking_forever(livy: LivyServer) -> None:
    batch_id = _batch(livy, Step("running"))
    livy.restart()
    sensor = LivyBatchSensor(task_id="wait", batch_id=batch_id, livy_conn_id=CONN, poke_interval=0.2)
    started = time.monotonic()
    event = _wait_deferred(sensor)
    assert time.monotonic() - started < 60, "a forgotten batch must end the wait, not poke on"
    with pytest.raises(SparkJobFailed, match="does not know batch"):
        sensor.execute_complete(context(), event)


def test_poking_without_deferral_matches_the_official_sensor(livy: LivyServer) -> None:
    batch_id = _batch(livy, Step("running", 1.0), Step("success"))
    sensor = LivyBatchSensor(task_id="wait", batch_id=batch_id, livy_conn_id=CONN, deferrable=False)
    assert sensor.poke(context()) is False  # type: ignore[arg-type]
    deadline = time.monotonic() + 60
    while not sensor.poke(context()):  # type: ignore[arg-type]
        assert time.monotonic() < deadline, "the batch never succeeded"
        time.sleep(0.2)


def test_state_names_are_checked_when_the_dag_is_parsed() -> None:
    with pytest.raises(ConfigurationError, match="unknown Livy state"):
        LivyBatchSensor(task_id="wait", batch_id=1, target_states=["SUCCESS"])
    with pytest.raises(ConfigurationError, match="both target and failure"):
        LivyBatchSensor(task_id="wait", batch_id=1, target_states=["dead"], failure_states=["dead"])


def test_the_templated_batch_id_is_what_the_trigger_watches(livy: LivyServer) -> None:
    batch_id = _batch(livy, Step("success"))
    sensor = LivyBatchSensor(task_id="wait", batch_id="{{ params.batch }}", livy_conn_id=CONN, poke_interval=0.2)
    assert "batch_id" in sensor.template_fields
    sensor.render_template_fields({"params": {"batch": batch_id}})  # type: ignore[arg-type]
    assert sensor.batch_id == batch_id and sensor.job_id == batch_id
    assert _wait_deferred(sensor)["job_id"] == batch_id


def test_a_batch_id_that_is_not_a_number_fails_before_deferring(livy: LivyServer) -> None:
    sensor = LivyBatchSensor(task_id="wait", batch_id="{{ params.batch }}", livy_conn_id=CONN)
    sensor.render_template_fields({"params": {"batch": "None"}})  # type: ignore[arg-type]  # an XCom that was empty
    with pytest.raises(ConfigurationError, match="batch_id must be a Livy batch id"):
        sensor.execute(context())
    assert livy.requests == []
