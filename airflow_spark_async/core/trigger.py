"""The one poll loop every backend's trigger runs.

A backend trigger is a subclass that names its backend class — a few lines — because the
rules live here, once:

* **The trigger owns its deadline.** Airflow does not enforce ``execution_timeout`` while a
  task is deferred, so the absolute deadline (epoch seconds) travels in the kwargs; a
  triggerer restart rebuilds the trigger with the same deadline instead of a fresh timer.
  At the deadline a ``timeout`` event goes back to the worker, which cancels the job.
* **Transient is not failure.** 429, 5xx and connection errors back off with jitter,
  honouring Retry-After, for up to ``error_budget`` consecutive errors; then the worker is
  asked to re-check the job (an ``unreachable`` event) and defers again if it still runs.
* **Restarts are normal.** All state comes from the kwargs; the loop may run twice for the
  same job and yields exactly one terminal event per run, then returns.
* **Never orphan a job.** ``on_kill`` (Airflow 3.3+) cancels the job when a user marks the
  deferred task failed/success or clears it — unless the trigger already fired, or its task
  is still ``deferred`` (then the trigger was only moved to another triggerer).
* **Nothing blocks the loop**, and ``CancelledError`` is never swallowed.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_spark_async.core.backend import Backend, JobStatus
from airflow_spark_async.core.errors import PermanentError, TransientError
from airflow_spark_async.core.events import EventStatus, JobEvent
from airflow_spark_async.core.policy import PollPolicy
from airflow_spark_async.core.states import JobState
from airflow_spark_async.core.watcher import get_backend, get_watcher

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["SparkJobTrigger", "watch_job"]


#: seconds ``on_kill`` waits for the task's state before cancelling anyway (the first SDK call of
#: a fresh triggerer was seen to take ~10 s; Airflow gives on_kill 30 s by default)
STATE_LOOKUP_TIMEOUT = 15.0


def _next_tick(now: float, interval: float) -> float:
    """The next multiple of ``interval`` on the wall clock, so triggers poll together."""
    return (math.floor(now / interval) + 1) * interval


class SparkJobTrigger(BaseTrigger):
    """Watch one Spark job until it ends, its deadline passes or the API stays unreachable.

    :param conn_id: the Airflow connection of the backend (read in the triggerer).
    :param job_id: the backend's id of the job.
    :param deadline: absolute epoch seconds after which the job is given up on, or ``None``.
    :param policy: a :class:`PollPolicy` as a dict.
    :param backend_options: JSON-safe options of the backend (never credentials).
    :param stop_states: backend states that end the watch although not terminal (a sensor's
        target states, such as an EMR cluster's ``WAITING``).
    :param owns_job: whether ``on_kill`` may cancel the job — true for operators that
        submitted it, false for sensors that only watch someone else's job.
    """

    backend_class: ClassVar[type[Backend]]

    def __init__(
        self,
        *,
        conn_id: str,
        job_id: str,
        deadline: float | None = None,
        policy: Mapping[str, Any] | None = None,
        backend_options: Mapping[str, Any] | None = None,
        owns_job: bool = True,
        stop_states: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.policy = PollPolicy.from_dict(policy)
        # serialize() returns exactly these, so they cannot drift from __init__.
        self._kwargs: dict[str, Any] = {
            "conn_id": conn_id,
            "job_id": str(job_id),
            "deadline": None if deadline is None else float(deadline),
            "policy": self.policy.to_dict(),
            "backend_options": dict(backend_options or {}),
            "owns_job": bool(owns_job),
            "stop_states": sorted(stop_states),
        }
        self.conn_id = conn_id
        self.job_id = str(job_id)
        self.deadline = self._kwargs["deadline"]
        self.backend_options = self._kwargs["backend_options"]
        self.owns_job = self._kwargs["owns_job"]
        self.stop_states = frozenset(self._kwargs["stop_states"])
        self._fired = False
        #: set by the worker, which already read the connection; never serialized
        self.preloaded_connection: Connection | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", dict(self._kwargs)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.serialize() == self.serialize()  # type: ignore[union-attr]

    __hash__ = None  # type: ignore[assignment]

    async def backend(self) -> Backend:
        return await get_backend(
            self.backend_class, self.conn_id, self.backend_options, conn=self.preloaded_connection
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        event = await watch_job(self, log=self.log)
        self._fired = True
        yield TriggerEvent(event.to_payload())

    async def on_kill(self) -> None:
        """Cancel the job after a user acted on the deferred task; see the module docstring."""
        if self._fired or not self.owns_job:
            return
        state = await self._task_state()
        if state == "deferred":
            self.log.info("Task still deferred: trigger moved, not killed; job %s left running", self.job_id)
            return
        self.log.info("Task left the deferred state (%s): cancelling job %s", state or "unknown", self.job_id)
        backend = await self.backend()
        await backend.cancel(self.job_id)

    async def _task_state(self) -> str | None:
        """The current state of this trigger's task instance, or ``None`` if it cannot be read."""
        ti = self.task_instance
        if ti is None:
            return None
        try:
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
            from asgiref.sync import sync_to_async

            # sync_to_async, not a direct call: on_kill runs in a task without the SDK's portal.
            # Bounded, so that the cancel itself still fits in the triggerer's on_kill time limit.
            states = await asyncio.wait_for(
                sync_to_async(RuntimeTaskInstance.get_task_states)(
                    dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
                ),
                timeout=STATE_LOOKUP_TIMEOUT,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed look-up must not stop the cancel: never orphan
            self.log.warning("Could not read the task's state (%s); cancelling to be safe", exc)
            return None
        # Airflow keys mapped task instances as "<task_id>_<map_index>".
        key = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"
        state = states.get(ti.run_id, {}).get(key)
        return None if state is None else str(state)


async def watch_job(trigger: SparkJobTrigger, *, log: Any, rng: random.Random | None = None) -> JobEvent:
    """Poll ``trigger``'s job until it ends and return the one terminal event.

    Used by the trigger in the triggerer and, through the sync bridge, by operators with
    ``deferrable=False`` — one loop for both, so they cannot disagree.
    """
    backend = await trigger.backend()
    watcher = get_watcher(backend)
    policy = trigger.policy
    started = time.time()
    last_state: str | None = None
    last_heartbeat = started
    errors = 0

    def event(status: EventStatus, st: JobStatus | None = None, **extra: Any) -> JobEvent:
        fields: dict[str, Any] = {
            "status": status,
            "backend": backend.name,
            "job_id": trigger.job_id,
            "deadline": trigger.deadline,
            "elapsed": round(time.time() - started, 3),
            "links": {**backend.links(trigger.job_id)},
        }
        if st is not None:
            fields.update(
                state=st.state.value,
                backend_state=st.backend_state,
                message=st.message,
                diagnostics=st.diagnostics,
                links={**fields["links"], **st.links},
            )
        fields.update(extra)
        return JobEvent(**fields)

    while True:
        now = time.time()
        if trigger.deadline is not None and now >= trigger.deadline:
            log.error("Job %s passed its deadline; the task will cancel it", trigger.job_id)
            return event(EventStatus.TIMEOUT, message=f"job {trigger.job_id} did not finish before its deadline")
        try:
            status = await watcher.status(trigger.job_id)
        except TransientError as exc:
            errors += 1
            if errors > policy.error_budget:
                log.error("Giving up polling after %d consecutive errors: %s", errors - 1, exc)
                return event(EventStatus.UNREACHABLE, message=str(exc))
            delay = policy.backoff(errors, retry_after=exc.retry_after, rng=rng)
            log.warning("Polling job %s failed (%s); retrying in %.1fs (%d/%d)", trigger.job_id, exc, delay,
                        errors, policy.error_budget)
            await _sleep_until(now + delay, trigger.deadline)
            continue
        except PermanentError as exc:
            log.error("Polling job %s failed permanently: %s", trigger.job_id, exc)
            return event(EventStatus.ERROR, message=str(exc))
        errors = 0
        if status.backend_state != last_state:
            log.info("Job %s is %s (%s)", trigger.job_id, status.backend_state, status.state.value)
            last_state = status.backend_state
        if status.is_terminal or status.backend_state in trigger.stop_states:
            ok = status.state is JobState.SUCCEEDED or status.backend_state in trigger.stop_states
            return event(EventStatus.for_final_state(ok), status)
        if now - last_heartbeat >= policy.heartbeat:
            log.info("Job %s still %s, elapsed %.0fs", trigger.job_id, status.backend_state, now - started)
            last_heartbeat = now
        await _sleep_until(_next_tick(time.time(), policy.interval), trigger.deadline)


async def _sleep_until(when: float, deadline: float | None) -> None:
    if deadline is not None:
        when = min(when, deadline)
    await asyncio.sleep(max(0.0, when - time.time()))
