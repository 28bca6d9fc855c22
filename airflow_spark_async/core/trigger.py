"""The one poll loop every backend's trigger runs.

A backend trigger is a subclass that names its backend class — a few lines — because the
rules live here, once:

* **The trigger owns its deadline.** Airflow does not enforce ``execution_timeout`` while a
  task is deferred, so the absolute deadline (epoch seconds) travels in the kwargs; a
  triggerer restart rebuilds the trigger with the same deadline instead of a fresh timer.
  The job is always polled *before* a timeout is declared — a job that succeeded while the
  triggerer was down is a success — and waiting on the shared watcher is bounded by the
  deadline too, so one endpoint's trouble cannot hold a trigger past it.
* **Transient is not failure.** 429, 5xx and connection errors back off with jitter,
  honouring a validated, capped Retry-After, for up to ``error_budget`` consecutive errors;
  then the worker is asked to re-check the job (an ``unreachable`` event) and defers again
  if it may still run. A 401 reloads the connection once (rotated credentials) before it
  counts as an error. Permanent-looking errors (404, 401 again, a job id that now names
  another key's job) go back to the worker as an ``error`` event with a reason, never as a
  crash: the worker re-checks before it fails, and cancels a job that may still run.
* **Restarts are normal.** All state comes from the kwargs; the loop may run twice for the
  same job and yields exactly one event per run, then returns. Whatever goes wrong inside,
  the trigger ends with an event (I4).
* **Never orphan, never kill a healthy job.** ``on_kill`` runs when a user acts on the
  deferred task — and, in Airflow 3.3, also when a trigger merely moves to another
  triggerer. Before 3.3, Airflow has no trigger ``on_kill``: the ``CancelledError`` that
  ``run`` receives (a user action, a move, a triggerer shutting down) runs the same checks, as
  the official Amazon provider does for EMR Serverless. It cancels only when it *knows* the
  task left the states in which a live try owns the job (``deferred``, ``running``,
  ``scheduled``, ``queued``: :data:`LIVE_TASK_STATES`); when the state cannot be read within
  its budget it leaves the job alone — it is recorded under its key, and the next try
  reattaches to it or cancels it. The lookup and the cancel together fit Airflow's 30 s
  ``on_kill`` limit.
* **Nothing blocks the loop**, and ``CancelledError`` is never swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import math
import random
import weakref
from collections.abc import AsyncIterator, Awaitable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_spark_async.core.airflow_versions import TRIGGER_ON_KILL
from airflow_spark_async.core.backend import Backend, JobState, JobStatus, cancel_job, parse_key, submit_job
from airflow_spark_async.core.errors import (
    AuthError,
    ConfigurationError,
    JobNotFoundError,
    PermanentError,
    TransientError,
)
from airflow_spark_async.core.ledger import default_ledger, read_entry
from airflow_spark_async.core.retry import PollPolicy, clock
from airflow_spark_async.core.runtime import forget_backend, get_backend, get_watcher

if TYPE_CHECKING:
    from airflow.sdk import Connection


# -------------------- events ----------------------------------------------------------------
# The terminal event a trigger yields: small, versioned, JSON-safe, self-sufficient.
#
# Why self-sufficient: ``dag.test()`` and some resume paths drop the kwargs given to
# ``defer``, so ``execute_complete`` must be able to act (log, cancel, re-defer, fail) from
# the event alone. Why versioned: events are stored in the metadata database; a worker on
# a newer release must still read an event written by an older triggerer.

#: 2 added key, reason, started_at, try_number and recheck; version-1 events still load
EVENT_VERSION = 2


class Reason(str, enum.Enum):
    """Why an ``error`` event was sent: the worker's re-check acts on it."""

    NOT_FOUND = "not_found"  # the backend does not know the job (any more)
    AUTH = "auth"  # the credentials were refused, even after reloading the connection
    FOREIGN = "foreign"  # the job id now names a job of another key (a server reused ids)
    REJECTED = "rejected"  # the backend refused a request we built
    CONFIG = "config"  # the connection is missing or wrong
    INTERNAL = "internal"  # anything else: a bug; the trigger still ends with an event


class EventStatus(str, enum.Enum):
    """Why the trigger stopped watching."""

    SUCCESS = "success"  # the job finished successfully
    FAILED = "failed"  # the job failed or was cancelled by someone else
    TIMEOUT = "timeout"  # the deadline passed while the job ran; the resume cancels it
    UNREACHABLE = "unreachable"  # the error budget ran out; the worker re-checks the job
    ERROR = "error"  # a permanent API error (auth refused, job unknown)

    @classmethod
    def for_final_state(cls, succeeded: bool) -> EventStatus:
        return cls.SUCCESS if succeeded else cls.FAILED


@dataclasses.dataclass(frozen=True)
class JobEvent:
    """What ``execute_complete`` receives, as a dataclass; ``to_payload`` is the wire form."""

    status: EventStatus
    backend: str
    job_id: str
    state: str | None = None
    backend_state: str | None = None
    message: str | None = None
    diagnostics: str | None = None
    links: Mapping[str, str] = dataclasses.field(default_factory=dict)
    deadline: float | None = None
    elapsed: float | None = None
    key: str | None = None
    reason: str | None = None
    started_at: float | None = None
    try_number: int | None = None
    recheck: int = 0

    def to_payload(self) -> dict[str, Any]:
        payload = dataclasses.asdict(self)
        payload["status"] = self.status.value
        payload["links"] = dict(self.links)
        payload["v"] = EVENT_VERSION
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> JobEvent:
        """Parse an event of any version; unknown fields from newer releases are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in payload.items() if k in known}
        try:
            data["status"] = EventStatus(payload.get("status"))
        except ValueError:
            data["status"] = EventStatus.ERROR
            data["message"] = f"unrecognised trigger event {dict(payload)!r}"
        data.setdefault("backend", "unknown")
        data.setdefault("job_id", "unknown")
        if not isinstance(data.get("recheck"), int) or isinstance(data.get("recheck"), bool):
            data["recheck"] = 0
        return cls(**data)


T = TypeVar("T")

# cancel_job and submit_job live in core.backend; re-exported here, where they were first
__all__ = [
    "EVENT_VERSION",
    "LIVE_TASK_STATES",
    "DefersToTrigger",
    "EventStatus",
    "JobEvent",
    "Reason",
    "SparkJobTrigger",
    "cancel_job",
    "submit_job",
    "watch_job",
]

#: task states in which a live try owns the job: ``on_kill`` leaves the job alone in them.
#: ``scheduled``/``queued`` too: after a failover, another copy of this trigger may have fired and
#: the task is on its way to resume on this very job (a new try after a clear has another key and
#: cancels the old job itself)
LIVE_TASK_STATES = frozenset({"deferred", "running", "scheduled", "queued"})
#: seconds ``on_kill`` may spend reading the task's state, over several attempts (the first SDK
#: call of a fresh triggerer was seen to take ~10 s) ...
STATE_LOOKUP_BUDGET = 16.0
STATE_LOOKUP_ATTEMPT = 8.0
#: ... and cancelling the job; together well inside Airflow's 30 s ``on_kill`` limit
CANCEL_BUDGET = 10.0
#: a last poll is given at least this long, even when the deadline has already passed
FINAL_POLL_GRACE = 30.0


#: how long the one early state read of a triggerer loop may take
WARM_UP_TIMEOUT = 120.0
_WARMED_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
#: strong references to background tasks (asyncio keeps only weak ones)
_BACKGROUND: set[asyncio.Task[Any]] = set()


def _in_background(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    task = asyncio.get_running_loop().create_task(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    return task


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
    :param target_states: backend states that end the watch as a success although they need not
        be terminal (a sensor's targets; an EMR cluster's ``WAITING`` for "ready").
    :param failure_states: backend states that end the watch as a failure, even where the
        backend calls them a success or not terminal (a sensor's failure states). They win over
        everything else: a job in a failure state is never reported as a success.
    :param stop_states: the name ``target_states`` had before (kwargs stored in users' databases
        still carry it); they are taken as target states, as they always were.
    :param owns_job: whether ``on_kill`` may cancel the job — true for operators that
        submitted it, false for sensors that only watch someone else's job.
    :param key: the key the job was submitted with; a status that carries another key means
        the id was reused by the server, and the job is not ours to report or cancel.
    :param try_number: the try that deferred, for the task log and the event.
    :param started_at: epoch seconds the job was submitted or reattached to (elapsed times
        count from it, not from a triggerer restart).
    :param recheck: how many times the worker re-deferred after ``unreachable``: the first poll
        waits a back-off that grows with it.
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
        target_states: Sequence[str] = (),
        failure_states: Sequence[str] = (),
        stop_states: Sequence[str] = (),
        key: str | None = None,
        try_number: int | None = None,
        started_at: float | None = None,
        recheck: int = 0,
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
            "target_states": sorted({*target_states, *stop_states}),
            "failure_states": sorted(failure_states),
            "key": key,
            "try_number": try_number,
            "started_at": None if started_at is None else float(started_at),
            "recheck": int(recheck or 0),
        }
        self.conn_id = conn_id
        self.job_id = str(job_id)
        self.deadline: float | None = self._kwargs["deadline"]
        self.backend_options: dict[str, Any] = self._kwargs["backend_options"]
        self.owns_job: bool = self._kwargs["owns_job"]
        self.target_states: frozenset[str] = frozenset(self._kwargs["target_states"])
        self.failure_states: frozenset[str] = frozenset(self._kwargs["failure_states"])
        self.key: str | None = key
        self.try_number = try_number
        self.started_at: float | None = self._kwargs["started_at"]
        self.recheck: int = self._kwargs["recheck"]
        self._fired = False
        #: set by the worker, which already read the connection; never serialized
        self.preloaded_connection: Connection | None = None

    @property
    def stop_states(self) -> frozenset[str]:
        """Every backend state that ends the watch before the job is terminal."""
        return self.target_states | self.failure_states

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", dict(self._kwargs)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.serialize() == self.serialize()  # type: ignore[union-attr]

    __hash__ = None  # type: ignore[assignment]

    async def backend(self, *, fresh: bool = False) -> Backend:
        """The (cached) backend of this trigger's connection; ``fresh`` re-reads the connection."""
        if fresh:
            forget_backend(self.backend_class, self.conn_id, self.backend_options)
            self.preloaded_connection = None
        return await get_backend(
            self.backend_class, self.conn_id, self.backend_options, conn=self.preloaded_connection
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.owns_job:
            self._warm_up_state_reads()
        try:
            event = await watch_job(self, log=self.log)
        except asyncio.CancelledError:
            if not TRIGGER_ON_KILL:
                # Before Airflow 3.3 no on_kill comes: this cancel is the only sign that a user acted
                # on the task — or that the trigger moved or its triggerer stops. The task's state
                # tells which, exactly as on_kill reads it (cancelling only a task that left its try).
                await self.on_kill()
            raise
        except Exception as exc:  # a bug must still end in an event the worker can act on (I4)
            self.log.exception("Watching job %s failed unexpectedly", self.job_id)
            event = JobEvent(
                status=EventStatus.ERROR,
                backend=getattr(self.backend_class, "name", "unknown"),
                job_id=self.job_id,
                message=f"the trigger failed unexpectedly: {type(exc).__name__}: {exc}",
                reason=Reason.INTERNAL.value,
                deadline=self.deadline,
                key=self.key,
                try_number=self.try_number,
                started_at=self.started_at,
                recheck=self.recheck,
            )
        self._fired = True
        yield TriggerEvent(event.to_payload())

    # -- on_kill ----------------------------------------------------------------------------

    async def on_kill(self) -> None:
        """Cancel the job after a user acted on the deferred task; see the module docstring.

        The work runs shielded in a task of its own: Airflow 3.3 cancels a trigger again at every
        sync with its supervisor until it has finished, which would otherwise interrupt this
        method within about a second — before a slow state read has answered.
        """
        if self._fired or not self.owns_job:
            return
        await asyncio.shield(_in_background(self._kill()))

    async def _kill(self) -> None:
        state = await self._state_within(STATE_LOOKUP_BUDGET)
        if state is None:
            self.log.warning(
                "Could not read the state of this task: NOT cancelling job %s (the trigger may only have moved to "
                "another triggerer). It stays recorded under key %s: the next try of this task reattaches to it "
                "or cancels it; see 'Jobs whose state could not be known' in the docs to clean up by hand.",
                self.job_id, self.key,
            )
            return
        if state in LIVE_TASK_STATES:
            self.log.info("Task is %s: the trigger moved or a live try owns job %s; leaving it running",
                          state, self.job_id)
            return
        self.log.info("Task left the deferred state (%s): cancelling job %s", state, self.job_id)
        try:
            await asyncio.wait_for(self._cancel_and_forget(), timeout=CANCEL_BUDGET)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.error("Could not cancel job %s (%s); it stays recorded under key %s for the next try",
                           self.job_id, exc, self.key)

    async def _cancel_and_forget(self) -> None:
        backend = await self.backend()
        for attempt in (1, 2):
            try:
                await cancel_job(backend, self.job_id, self.key)
                break
            except TransientError:
                if attempt == 2:
                    raise
                await asyncio.sleep(1.0)
        self.log.info("Cancelled job %s", self.job_id)
        try:
            await self.forget_record(backend)
        except Exception as exc:  # the next try finds the record, sees the job ended, and moves on
            self.log.warning("Could not delete the record of job %s (%s)", self.job_id, exc)

    async def forget_record(self, backend: Backend) -> None:
        """Drop the ledger record of this job (backends without lookup by key), once it is cancelled."""
        parsed = parse_key(self.key or "")
        if backend.supports_find_by_key or parsed is None:
            return
        from asgiref.sync import sync_to_async

        ledger = default_ledger()

        def forget() -> None:
            entry = read_entry(ledger, parsed.family, backend.name)
            if entry is not None and entry.job_id == self.job_id:
                ledger.forget(parsed.family)

        await sync_to_async(forget)()

    def _warm_up_state_reads(self) -> None:
        """Read a task state once per triggerer loop, early. The first such read of a fresh
        triggerer makes its supervisor build the in-process Execution API client, which took 9 s on
        a quiet machine and 29 s under load — longer than ``on_kill`` may wait. Paid here, at the
        first trigger's start, a later ``on_kill`` gets its answer at once."""
        loop = asyncio.get_running_loop()
        if loop in _WARMED_LOOPS:
            return
        _WARMED_LOOPS.add(loop)

        async def warm() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.read_task_state(), timeout=WARM_UP_TIMEOUT)

        _in_background(warm())

    async def _state_within(self, budget: float) -> str | None:
        """:meth:`read_task_state`, retried until it answers or ``budget`` seconds are spent."""
        until = clock.monotonic() + budget
        while True:
            left = until - clock.monotonic()
            if left <= 0:
                return None
            try:
                state = await asyncio.wait_for(self.read_task_state(), timeout=min(STATE_LOOKUP_ATTEMPT, left))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.warning("Reading the task's state failed (%s)", exc or type(exc).__name__)
                state = None
            if state is not None:
                return state
            await asyncio.sleep(min(1.0, max(0.0, until - clock.monotonic())))

    async def read_task_state(self) -> str | None:
        """One read of this trigger's task instance state; ``None`` if it cannot be known."""
        ti = self.task_instance
        if ti is None:
            return None
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
        from asgiref.sync import sync_to_async

        # sync_to_async, not a direct call: on_kill runs in a task without the SDK's portal.
        states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
            dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
        )
        # Airflow keys mapped task instances as "<task_id>_<map_index>".
        key = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"
        state = states.get(ti.run_id, {}).get(key)
        return None if state is None else str(state)


class DefersToTrigger:
    """What an operator and a sensor share: the trigger they defer to, and the one place its kwargs
    are built.

    The operator's defer, its ``deferrable=False`` loop, a sensor's defer and re-defer and its
    ``start_from_trigger`` arguments all come through :meth:`trigger_kwargs`, so a backend whose
    trigger takes one more argument overrides one method.
    """

    trigger_class: ClassVar[type[SparkJobTrigger]]
    conn_id: str
    backend_options: Mapping[str, Any]
    poll_policy: PollPolicy

    @property
    def backend_class(self) -> type[Backend[Any]]:
        return self.trigger_class.backend_class

    def trigger_kwargs(self, job_id: str, **fields: Any) -> dict[str, Any]:
        """The kwargs of this task's trigger watching ``job_id``: the connection, the poll policy
        and the backend options of this task, plus ``fields`` (any other argument of
        :class:`SparkJobTrigger`, such as ``deadline``, ``key`` or ``failure_states``)."""
        return {
            "conn_id": self.conn_id,
            "job_id": str(job_id),
            "policy": self.poll_policy.to_dict(),
            "backend_options": dict(self.backend_options),
            **fields,
        }

    def build_trigger(self, job_id: str, **fields: Any) -> SparkJobTrigger:
        """This task's trigger watching ``job_id`` (see :meth:`trigger_kwargs`)."""
        return self.trigger_class(**self.trigger_kwargs(job_id, **fields))


async def watch_job(trigger: SparkJobTrigger, *, log: Any, rng: random.Random | None = None) -> JobEvent:
    """Poll ``trigger``'s job until it ends and return the one terminal event.

    Used by the trigger in the triggerer and, through the sync bridge, by operators with
    ``deferrable=False`` — one loop for both, so they cannot disagree.
    """
    policy = trigger.policy
    started = trigger.started_at or clock.now()
    backend_name = getattr(trigger.backend_class, "name", "unknown")
    backend: Backend | None = None
    last_state: str | None = None
    last_heartbeat = clock.now()
    errors = 0
    reloaded = False

    def event(status: EventStatus, st: JobStatus | None = None, **extra: Any) -> JobEvent:
        links: dict[str, str] = {}
        if backend is not None:
            try:
                links.update(backend.links(trigger.job_id))
            except Exception:  # a malformed id must not cost the event
                pass
        fields: dict[str, Any] = {
            "status": status,
            "backend": backend_name,
            "job_id": trigger.job_id,
            "deadline": trigger.deadline,
            "elapsed": round(clock.now() - started, 3),
            "links": links,
            "key": trigger.key,
            "try_number": trigger.try_number,
            "started_at": started,
            "recheck": trigger.recheck,
        }
        if st is not None:
            fields.update(
                state=st.state.value,
                backend_state=st.backend_state,
                message=st.message,
                diagnostics=st.diagnostics,
                links={**links, **st.links},
            )
        fields.update(extra)
        return JobEvent(**fields)

    def error(reason: Reason, exc: BaseException) -> JobEvent:
        log.error("Watching job %s failed: %s", trigger.job_id, exc)
        return event(EventStatus.ERROR, message=str(exc), reason=reason.value)

    if trigger.recheck:
        delay = policy.backoff(trigger.recheck, rng=rng)
        log.info("Re-check %d of job %s: polling again in %.0fs", trigger.recheck, trigger.job_id, delay)
        # not bounded by the deadline: past it, this wait is what spaces the worker's re-checks out
        await clock.sleep_until(clock.now() + delay)

    while True:
        now = clock.now()
        try:
            if backend is None:
                backend = await trigger.backend(fresh=reloaded)
            status = await _bounded_by_deadline(get_watcher(backend).status(trigger.job_id), trigger.deadline)
        except _DeadlineReached:
            log.error("Job %s could not be polled before its deadline; the task will re-check it", trigger.job_id)
            return event(EventStatus.TIMEOUT, message=f"job {trigger.job_id} did not finish before its deadline")
        except TransientError as exc:
            errors += 1
            past_deadline = trigger.deadline is not None and clock.now() >= trigger.deadline
            if errors > policy.error_budget or past_deadline:
                log.error("Giving up polling after %d consecutive errors: %s", errors, exc)
                status_ = EventStatus.TIMEOUT if past_deadline else EventStatus.UNREACHABLE
                return event(status_, message=str(exc))
            delay = policy.backoff(errors, retry_after=exc.retry_after, rng=rng)
            log.warning("Polling job %s failed (%s); retrying in %.1fs (%d/%d)", trigger.job_id, exc, delay,
                        errors, policy.error_budget)
            await clock.sleep_until(now + delay, trigger.deadline)
            continue
        except AuthError as exc:
            if not reloaded:
                log.warning("Credentials refused (%s); reloading connection %s once", exc, trigger.conn_id)
                reloaded, backend = True, None
                continue
            return error(Reason.AUTH, exc)
        except JobNotFoundError as exc:
            return error(Reason.NOT_FOUND, exc)
        except PermanentError as exc:
            return error(Reason.REJECTED, exc)
        except ConfigurationError as exc:
            return error(Reason.CONFIG, exc)
        errors = 0
        if trigger.key and status.key and status.key != trigger.key:
            return error(Reason.FOREIGN, JobNotFoundError(
                f"{backend_name} job id {trigger.job_id} now names a job of another key ({status.key}, expected "
                f"{trigger.key}): the server reused the id, so the job of this task is gone or unknown"))
        if status.backend_state != last_state:
            log.info("Job %s is %s (%s)", trigger.job_id, status.backend_state, status.state.value)
            last_state = status.backend_state
        if status.is_terminal or status.backend_state in trigger.stop_states:
            return event(EventStatus.for_final_state(_succeeded(trigger, status)), status)
        now = clock.now()
        if trigger.deadline is not None and now >= trigger.deadline:
            log.error("Job %s passed its deadline while %s; the task will cancel it", trigger.job_id,
                      status.backend_state)
            return event(EventStatus.TIMEOUT, status,
                         message=f"job {trigger.job_id} did not finish before its deadline")
        if now - last_heartbeat >= policy.heartbeat:
            log.info("Job %s still %s, elapsed %.0fs", trigger.job_id, status.backend_state, now - started)
            last_heartbeat = now
        await clock.sleep_until(_next_tick(now, policy.interval), trigger.deadline)


def _succeeded(trigger: SparkJobTrigger, status: JobStatus) -> bool:
    """Whether a job that ends the watch ended it as a success: a failure state never does."""
    if status.backend_state in trigger.failure_states:
        return False
    return status.backend_state in trigger.target_states or status.state is JobState.SUCCEEDED


class _DeadlineReached(Exception):
    """The wait for a status ran into the deadline."""


async def _bounded_by_deadline(awaitable: Awaitable[JobStatus], deadline: float | None) -> JobStatus:
    """Await a status, but not past the deadline (always leaving one last poll its grace)."""
    if deadline is None:
        return await awaitable
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(deadline - clock.now(), FINAL_POLL_GRACE))
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        raise _DeadlineReached
    return task.result()
