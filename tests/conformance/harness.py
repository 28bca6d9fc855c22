"""What a backend provides to run the conformance suite, and the helpers that drive it.

The suite drives the real operator, sensor and trigger classes the way Airflow does —
``execute`` until it defers, ``serialize()`` then rebuild the trigger from its class path and
kwargs, run it to its single event, then ``execute_complete`` — against a real server (the
local Spark cluster, the Livy and Databricks test servers, moto) reached through fault proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from airflow_spark_async.core.airflow_versions import TRIGGER_ON_KILL, TaskDeferred
from airflow_spark_async.core.backend import cancel_job
from airflow_spark_async.core.http import close_loop_sessions
from airflow_spark_async.core.operator import SparkJobOperator
from airflow_spark_async.core.sensor import SparkJobSensor
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.core.trigger import SparkJobTrigger
from tests.servers.fault_proxy import FaultProxy


@dataclasses.dataclass
class FakeTI:
    """The few task-instance attributes an operator reads, and the XComs it pushes."""

    dag_id: str = "conformance"
    task_id: str = "job"
    run_id: str = "manual__1"
    map_index: int = -1
    try_number: int = 1
    xcoms: dict[str, Any] = dataclasses.field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        # Airflow 3.0's Execution API answers an XCom of None with 422 and the task fails: never push one
        assert value is not None, f"XCom {key!r} pushed with the value None"
        self.xcoms[key] = value


def new_ti(task: str) -> FakeTI:
    """A task instance of a DAG run of its own, so no two tests share a job key."""
    return FakeTI(task_id=task, run_id=f"manual__{uuid.uuid4().hex[:8]}")


@dataclasses.dataclass
class Harness:
    """One backend, wired for the suite.

    :param make_operator: (task_id, kind, seconds, **overrides) -> operator; kind is
        ``"succeed"`` or ``"fail"``, seconds how long the job runs.
    :param proxies: fault proxies in front of every endpoint the backend polls.
    :param submit_path / cancel_path: regexes of submission and cancel requests.
    :param remote_state: the backend's own state of a job, read around the proxies.
    :param cancelled_states: backend states that prove a job was cancelled.
    :param failure_text: text of the backend's own error that a failed task must show.
    :param make_sensor: (task_id, job_id, **overrides) -> the backend's sensor on that job, polled
        every :data:`POLL` seconds and deferrable; ``None`` where the backend has no sensor of its own.
    :param driver_log: whether a job has a driver whose log the task shows (an EMR cluster has
        none: it is the place jobs run, not a job).
    """

    name: str
    make_operator: Callable[..., SparkJobOperator]
    proxies: list[FaultProxy]
    submit_path: str
    cancel_path: str
    remote_state: Callable[[str], str]
    cancelled_states: set[str]
    failure_text: str
    conn_id: str
    #: how the backend finds an earlier try's job: "backend" (by key) or "ledger"
    reattach_by: str = "ledger"
    #: the HTTP method of a cancel request (Livy and REST APIs that DELETE)
    cancel_method: str = "POST"
    make_sensor: Callable[..., SparkJobSensor] | None = None
    driver_log: bool = True
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: the operator's return value for a job id, as its official twin returns it (Livy: an int)
    result_of: Callable[[str], Any] = str

    def count(self, method: str, path: str) -> int:
        return sum(p.count(method, path) for p in self.proxies)

    def cancels(self) -> int:
        return self.count(self.cancel_method, self.cancel_path)


#: seconds between polls of every operator, sensor and trigger of the suite: short, so that a test
#: waits for its job rather than for the next poll (each test's outcome does not depend on it)
POLL = 0.25


def sleep_args(kind: str, seconds: float) -> list[str]:
    """Arguments of ``tests/apps/sleep_then_exit.py``: run ``seconds``, then succeed or fail."""
    return [str(seconds), "0" if kind == "succeed" else "3"]


def operator_factory(operator_cls: Callable[..., SparkJobOperator], application: str,
                     **fixed: Any) -> Callable[..., SparkJobOperator]:
    """The ``make_operator`` of a backend whose operator takes a :class:`SparkJob`: the sleep app
    at ``application``, polled every :data:`POLL` seconds, deferrable, plus the backend's ``fixed`` arguments."""

    def make_operator(task_id: str, kind: str, seconds: float, **overrides: Any) -> SparkJobOperator:
        job = SparkJob(application=application, args=sleep_args(kind, seconds))
        kwargs = {"task_id": task_id, "job": job, "poll_interval": POLL, "deferrable": True, **fixed, **overrides}
        return operator_cls(**kwargs)

    return make_operator


def sensor_factory(sensor_cls: Callable[..., SparkJobSensor], job_arguments: Callable[[str], Mapping[str, Any]],
                   **fixed: Any) -> Callable[..., SparkJobSensor]:
    """The ``make_sensor`` of a backend: ``job_arguments(job_id)`` names the job in the sensor's own
    arguments (a Livy ``batch_id``, an EMR ``job_flow_id`` and ``step_id``), polled every :data:`POLL` seconds."""

    def make_sensor(task_id: str, job_id: str, **overrides: Any) -> SparkJobSensor:
        return sensor_cls(**{"task_id": task_id, "poke_interval": POLL, **job_arguments(job_id), **fixed, **overrides})

    return make_sensor


def rebuild(trigger: SparkJobTrigger) -> SparkJobTrigger:
    """What a triggerer does: import the class path, call it with the serialized kwargs."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


def run_trigger(trigger: SparkJobTrigger) -> list[dict[str, Any]]:
    """Run a trigger to completion on a fresh loop; return the payloads it yielded."""

    async def collect() -> list[dict[str, Any]]:
        try:
            return [event.payload async for event in trigger.run()]
        finally:
            await close_loop_sessions()

    return asyncio.run(collect())


def context(op: SparkJobOperator | SparkJobSensor, ti: FakeTI) -> Any:
    """The part of a task's context the operators read: the task instance, and the task itself."""
    return {"ti": ti, "task": op}


def finalize(op: Any, ti: FakeTI) -> dict[str, Any]:
    """What Airflow's task runner does at the end of every task process (``finalize``): ask each
    extra link of the task for its value, and store the answer as the link's XCom. Returns the answers."""
    answers = {}
    for link in op.operator_extra_links:
        answers[link.xcom_key] = link.get_link(op, ti_key=ti)
        ti.xcom_push(link.xcom_key, answers[link.xcom_key])
    return answers


def defer(op: SparkJobOperator | SparkJobSensor, ti: FakeTI) -> SparkJobTrigger:
    """``execute`` up to the deferral; the trigger it deferred to."""
    try:
        op.execute(context(op, ti))
    except TaskDeferred as deferred:
        assert deferred.method_name == "execute_complete"
        return deferred.trigger  # type: ignore[return-value]
    raise AssertionError(f"{op} did not defer")


def run_to_end(op: SparkJobOperator, ti: FakeTI) -> tuple[Any, list[dict[str, Any]]]:
    """execute → defer → serialize/rebuild → run the trigger → execute_complete."""
    trigger = rebuild(defer(op, ti))
    events = run_trigger(trigger)
    assert len(events) == 1, f"a trigger must yield exactly one event, got {events}"
    return op.execute_complete(context(op, ti), events[0]), events


def cancel(trigger: SparkJobTrigger) -> None:
    """Cancel ``trigger``'s job the way the core does: a test's clean-up of a job left running."""

    async def go() -> None:
        try:
            await cancel_job(await trigger.backend(), trigger.job_id, trigger.key)
        finally:
            await close_loop_sessions()

    asyncio.run(go())


def kill_while_watching(trigger: SparkJobTrigger, task_state: str | None) -> None:
    """Let ``trigger`` watch for two seconds, then do what the triggerer does when a user kills the
    task: cancel the run and, from Airflow 3.3, call ``on_kill``, which reads ``task_state`` as the task's state."""

    async def state() -> str | None:
        return task_state

    trigger.read_task_state = state  # type: ignore[method-assign]  # the one read of Airflow a test cannot make

    async def start_then_kill() -> None:
        task = asyncio.create_task(anext(trigger.run()))
        await asyncio.sleep(2)
        task.cancel()
        if TRIGGER_ON_KILL:
            await trigger.on_kill()
        else:  # before Airflow 3.3 the cancel alone tells the trigger (core.trigger)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await close_loop_sessions()

    asyncio.run(start_then_kill())
