"""One simulated world: a model of Airflow's side driving the package's real code.

What Airflow does is modelled here, close to what ``airflow.jobs.triggerer_job_runner`` and the
task runner do in 3.3:

* **tries** — ``try_number``, ``max_tries``, ``task.retries``; a failure with retries left is
  ``up_for_retry`` and a new try runs after the retry delay; a clear sets
  ``max_tries = try_number + retries`` so the next try starts a new key generation;
* **defer / resume** — ``execute`` raises ``TaskDeferred``; the trigger is serialized, its
  kwargs go through JSON, and it is rebuilt from classpath + kwargs on a triggerer; its first
  event schedules ``execute_complete(context, event)`` on a fresh operator (a new process);
  duplicate events of a trigger running twice are dropped, as Airflow drops them;
* **triggerers** — two of them; a restart cancels every trigger task *without* ``on_kill``
  and rebuilds them from kwargs; a failover starts the trigger on the other triggerer while
  the first still runs it, then cancels the first with the user-action message, so its
  ``on_kill`` runs while the task is still deferred (Airflow 3.3 does exactly that);
* **user actions while deferred** — mark failed, mark success, clear (``on_kill`` with the new
  task state, then a new try for clear); DAG run deleted and re-created with the same
  ``run_id`` (a new ``start_date``);
* **workers** — a worker may die at any await point of a backend call (before or after the
  server applied a submit): Airflow notices after a heartbeat timeout and fails the try.

The task state the trigger's ``read_task_state`` sees comes from this model, and fails too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import greenlet
from airflow.sdk import Connection
from airflow.sdk.bases.operator import ExecutorSafeguard
from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
from airflow.sdk.execution_time.comms import ErrorResponse

from airflow_spark_async.core import backend as core_backend
from airflow_spark_async.core import ledger, retry, runtime
from airflow_spark_async.core.airflow_versions import BaseHook, TaskDeferred
from airflow_spark_async.core.backend import job_key_from_context, key_family
from airflow_spark_async.core.errors import ConnectionFailed
from airflow_spark_async.core.operator import SparkJobOperator
from airflow_spark_async.core.trigger import SparkJobTrigger
from tests.sim.backends import MODELS, Server, SimJob, fault_exception, slow
from tests.sim.checker import check
from tests.sim.vloop import (
    EPOCH,
    ROLE,
    Crashed,
    SimulationStuck,
    VirtualLoop,
    WorkerGreenlet,
    bury,
    drive_worker,
    runner,
)

USER_ACTION = "__airflow_user_action__"  # the message Airflow cancels a trigger with before on_kill
ON_KILL_LIMIT = 30.0  # [triggerer] on_kill_timeout
CONN_ID = "sim_backend"
HTTP_TIMEOUT = 30.0  # core.http's total request timeout
FINAL = frozenset({"success", "failed", "deleted"})

_current: World | None = None


def current_world() -> World:
    assert _current is not None, "no simulated world is running"
    return _current


class LedgerUnavailable(Exception):
    """An Airflow Variable read or write failed (the API server blipped)."""


class FaultyLedger(ledger.MemoryLedger):
    """The core's ledger, in memory, failing like Variables can. ``forget`` never raises: the real
    one swallows errors (the record is just kept)."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world

    def _maybe_fail(self, op: str) -> None:
        world = self.world
        in_worker = isinstance(greenlet.getcurrent(), WorkerGreenlet)
        forced = world.forced(op, "before")
        if isinstance(forced, BaseException):
            raise forced
        if forced == "crash" and in_worker:
            raise Crashed()
        if forced is not None or world.faulty(op):
            if in_worker and world.rng.random() < 0.3:
                raise Crashed()
            raise LedgerUnavailable(f"Variable {op} failed")

    def remember(self, key: str, backend: str, job_id: str) -> None:
        self._maybe_fail("ledger_write")
        super().remember(key, backend, job_id)
        try:
            recorded = json.loads(job_id).get("job_id")
        except (ValueError, AttributeError):
            recorded = job_id
        job = self.world.server.by_id.get(str(recorded))
        if job is not None:
            job.recorded = True

    def recall(self, key: str, backend: str) -> str | None:
        self._maybe_fail("ledger_read")
        return super().recall(key, backend)

    def forget(self, key: str) -> None:
        if self.world.faulty("ledger_forget"):
            return
        super().forget(key)


# -- the plan of a schedule ----------------------------------------------------------------------

CHAOS = ("triggerer_restart", "failover", "mark_failed", "mark_success", "clear", "delete_run", "server_restart")


@dataclasses.dataclass
class Plan:
    """Everything a seed decides up front (the rest is drawn as the schedule runs)."""

    retries: int = 1
    job_timeout: float | None = None
    poll_interval: float = 10.0
    error_budget: int = 3
    fault_rate: float = 0.0
    state_fault_rate: float = 0.0
    chaos: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    #: (operation, phase, n-th call of it) -> what happens there, for hand-written schedules:
    #: an exception instance, "crash", or ("slow", seconds)
    forced: dict[tuple[str, str, int], Any] = dataclasses.field(default_factory=dict)
    #: (duration, succeeds) of the first jobs created, for hand-written schedules (then random)
    jobs: list[tuple[float, bool]] = dataclasses.field(default_factory=list)

    @classmethod
    def draw(cls, rng: random.Random, semantics: str) -> Plan:
        kinds = [k for k in CHAOS if k != "server_restart" or semantics == "reuse"]
        chaos = sorted((rng.uniform(0, 4000), rng.choice(kinds)) for _ in range(rng.choice((0, 1, 1, 2, 3, 5))))
        return cls(
            retries=rng.choice((0, 1, 2, 3)),
            job_timeout=rng.choice((None, None, rng.uniform(20, 400), rng.uniform(400, 8000))),
            poll_interval=rng.choice((5.0, 10.0, 30.0, 60.0)),
            error_budget=rng.choice((1, 3, 20)),
            fault_rate=rng.choice((0.0, 0.0, 0.02, 0.1, 0.25)),
            state_fault_rate=rng.choice((0.0, 0.1, 0.5, 1.0)),
            chaos=chaos,
        )


# -- Airflow-side records ------------------------------------------------------------------------


@dataclasses.dataclass
class TryRecord:
    try_number: int
    generation: int
    started_at: float
    outcome: str | None = None  # success / failed / crashed / killed / deleted / trigger_failed / timeout
    outcome_at: float | None = None
    error: BaseException | None = None
    jobs: list[SimJob | None] = dataclasses.field(default_factory=list)  # what the pushed job ids named
    result: Any = None
    deadline: float | None = None  # virtual seconds, from the last deferral's trigger kwargs


class TIModel:
    """A task instance row; every state change wakes the model's scheduler loop for it."""

    def __init__(self, dag_id: str, task_id: str, run_id: str, retries: int) -> None:
        self.dag_id, self.task_id, self.run_id, self.retries = dag_id, task_id, run_id, retries
        self.map_index = -1
        self.try_number = 1
        self.max_tries = retries
        self.trigger_id: int | None = None
        self.resume: tuple[str, dict[str, Any], dict[str, Any]] | None = None
        self.tries: dict[int, TryRecord] = {}
        self.ended: str | None = None  # how the task instance ended, for I3
        self.changed = asyncio.Event()
        self._state: str | None = "scheduled"

    @property
    def state(self) -> str | None:
        return self._state

    @state.setter
    def state(self, value: str | None) -> None:
        self._state = value
        self.changed.set()

    @property
    def generation(self) -> int:
        return max(1, self.max_tries - self.retries + 1)


@dataclasses.dataclass
class DagRunModel:
    run_id: str
    start_date: dt.datetime
    ti: TIModel
    family: str = ""
    clear_number: int = 0
    deleted: bool = False


@dataclasses.dataclass
class TriggerRec:
    """A trigger row: one deferral of one try."""

    id: int
    run: DagRunModel
    try_number: int
    classpath: str
    kwargs: dict[str, Any]
    method: str
    next_kwargs: dict[str, Any]
    assigned: str
    copies: dict[str, asyncio.Task[None]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TriggerRun:
    """One run of a trigger on one triggerer, for I4."""

    rec: TriggerRec
    triggerer: str
    events: int = 0
    cancelled: bool = False
    on_kill: bool = False
    error: BaseException | None = None


@dataclasses.dataclass
class Violation:
    invariant: str
    message: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.message}"


# -- the world -----------------------------------------------------------------------------------


def _operator_class(trigger_cls: type[SparkJobTrigger]) -> type[SparkJobOperator]:
    return type(f"{trigger_cls.__name__[:-7]}Operator", (SparkJobOperator,), {
        "trigger_class": trigger_cls, "__module__": __name__})


OPERATORS: dict[str, type[SparkJobOperator]] = {name: _operator_class(cls) for name, cls in MODELS.items()}


class World:
    """One seeded schedule of one backend model."""

    def __init__(self, semantics: str, seed: int, plan: Plan | None = None) -> None:
        self.semantics = semantics
        self.seed = seed
        self.rng = random.Random(f"{semantics}:{seed}")
        self.plan = plan or Plan.draw(self.rng, semantics)
        self.fault_rate = self.plan.fault_rate
        self.loop = VirtualLoop()
        self.server = Server(self, semantics)
        self.ledger = FaultyLedger(self)
        self.trigger_cls = MODELS[semantics]
        self.operator_cls = OPERATORS[semantics]
        self.violations: list[Violation] = []
        self.runs: list[DagRunModel] = []
        self.triggers: list[TriggerRec] = []
        self.trigger_runs: list[TriggerRun] = []
        self.triggerer_up = {"A": True, "B": True}
        self.crashed: list[WorkerGreenlet] = []
        self.calls: dict[tuple[str, str], int] = {}
        self.faults_injected = 0
        self.foreign_cancels: list[SimJob] = []
        self.background: set[asyncio.Task[Any]] = set()
        self.deletes = 0
        self.unnotified = 0  # user actions no on_kill was delivered for
        self.pending_runs = 0  # DAG runs deleted and about to be re-created
        self.salt = "sim-deployment"

    # -- faults -------------------------------------------------------------------------------

    def faulty(self, op: str) -> bool:
        if self.fault_rate and self.rng.random() < self.fault_rate:
            self.faults_injected += 1
            return True
        return False

    def forced(self, op: str, phase: str) -> Any:
        n = self.calls[(op, phase)] = self.calls.get((op, phase), 0) + 1
        what = self.plan.forced.get((op, phase, n))
        if what is not None:
            self.faults_injected += 1
        return what

    async def fault(self, op: str, phase: str) -> None:
        """A fault at one await point of a backend model's method, if the schedule has one here."""
        what = self.forced(op, phase)
        if what is None and self.faulty(op):
            roll = self.rng.random()
            if roll < 0.12 and (ROLE.get() == "worker"):
                what = "crash"
            elif roll < 0.45:
                what = ("slow", None)
            else:
                what = fault_exception(op, self.rng)
        if what is None:
            return
        if what == "crash":
            if ROLE.get() == "worker":
                raise Crashed()
            return
        if isinstance(what, tuple):
            seconds = what[1] if what[1] is not None else slow(self.rng)
            if seconds > HTTP_TIMEOUT:  # the client gives up: a lost answer if the server applied it
                await asyncio.sleep(HTTP_TIMEOUT)
                raise ConnectionFailed(f"{op} timed out after {HTTP_TIMEOUT:.0f}s")
            await asyncio.sleep(seconds)
            return
        raise what

    def note_cancel(self, job: SimJob) -> None:
        """A cancel reached the server: never for another task's job, never for the job a deferred
        task is watching (issue 9 defect 2: a moved trigger's on_kill killing a healthy job)."""
        if job.foreign:
            self.foreign_cancels.append(job)
        for run in self.runs:
            ti = run.ti
            rec = next((r for r in self.triggers if r.id == ti.trigger_id), None)
            if not run.deleted and ti.state == "deferred" and rec is not None \
                    and rec.kwargs.get("job_id") == job.job_id and job.family == run.family:
                self.violate("I2", f"job {job.job_id} was cancelled while its task is deferred watching it "
                                   f"(trigger {rec.id}): a healthy job killed")

    # -- the Airflow API the core reaches -------------------------------------------------------

    def connection(self) -> Connection:
        return Connection(conn_id=CONN_ID, conn_type="http", host="sim")

    async def aconnection(self) -> Connection:
        if self.faulty("get_connection"):
            raise AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status": 503}))
        return self.connection()

    async def read_task_state(self, trigger: SparkJobTrigger) -> str | None:
        """What ``get_task_states`` answers for the trigger's task instance (by run id, as Airflow)."""
        forced = self.forced("read_task_state", "before")
        if forced is not None:
            if isinstance(forced, BaseException):
                raise forced
            return None
        if self.plan.state_fault_rate and self.rng.random() < self.plan.state_fault_rate * max(self.fault_rate, 0.2):
            roll = self.rng.random()
            if roll < 0.4:
                return None
            if roll < 0.7:
                raise AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status": 503}))
            await asyncio.sleep(self.rng.uniform(1, 40))
        ti = trigger.task_instance
        for run in self.runs:
            if run.run_id == ti.run_id and not run.deleted:
                return run.ti.state
        return None

    # -- running ------------------------------------------------------------------------------

    def spawn(self, coro: Any, role: str | None = None) -> asyncio.Task[Any]:
        task = self.loop.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            fn()

        self.spawn(run())

    def now(self) -> float:
        return self.loop.vtime

    def violate(self, invariant: str, message: str) -> None:
        self.violations.append(Violation(invariant, f"{message} (t={self.now():.1f}s)"))

    def new_run(self) -> DagRunModel:
        ti = TIModel(dag_id="sim_dag", task_id="spark", run_id="manual__sim", retries=self.plan.retries)
        start = dt.datetime.fromtimestamp(EPOCH + self.now(), dt.timezone.utc)
        run = DagRunModel(run_id=ti.run_id, start_date=start, ti=ti)
        run.family = key_family(job_key_from_context(self.context(run, TryRecord(1, 1, self.now()), None)))
        self.runs.append(run)
        self.spawn(self.ti_loop(run))
        return run

    async def main(self) -> None:
        self.new_run()
        for when, kind in self.plan.chaos:
            await asyncio.sleep(max(0.0, when - self.now()))
            self.act(kind)
        while self.pending_runs or not all(run.ti.state in FINAL for run in self.runs):
            if self.now() > 30 * 86400:
                self.violate("liveness", f"task instance not finished after 30 days: {self.runs[-1].ti.state}")
                return
            ti = self.runs[-1].ti
            ti.changed.clear()
            try:
                await asyncio.wait_for(ti.changed.wait(), 3600)
            except TimeoutError:
                pass
        await asyncio.sleep(900)  # let cancels and on_kill calls in flight settle

    # -- the task instance's life ----------------------------------------------------------------

    async def ti_loop(self, run: DagRunModel) -> None:
        ti = run.ti
        while not run.deleted:
            if ti.state == "scheduled":
                await asyncio.sleep(self.rng.uniform(0, 5))
                if ti.state != "scheduled" or run.deleted:
                    continue
                ti.state = "running"
                resume, ti.resume = ti.resume, None
                if resume is None:
                    ti.tries[ti.try_number] = TryRecord(ti.try_number, ti.generation, self.now())
                await self.worker(run, ti.tries[ti.try_number], resume)
            elif ti.state == "up_for_retry":
                await asyncio.sleep(self.rng.uniform(1, 300))
                if ti.state == "up_for_retry" and not run.deleted:
                    ti.try_number += 1
                    ti.state = "scheduled"
            else:
                ti.changed.clear()
                await ti.changed.wait()

    def outcome(self, tr: TryRecord, outcome: str, error: BaseException | None = None) -> None:
        if tr.outcome is not None:
            self.violate("I4", f"try {tr.try_number} got a second outcome {outcome!r} after {tr.outcome!r}")
            return
        tr.outcome, tr.outcome_at, tr.error = outcome, self.now(), error

    def fail_try(self, run: DagRunModel, tr: TryRecord, outcome: str, error: BaseException | None) -> None:
        ti = run.ti
        self.outcome(tr, outcome, error)
        if ti.retries and ti.try_number <= ti.max_tries:
            ti.state = "up_for_retry"
        else:
            ti.state, ti.ended = "failed", outcome

    def context(self, run: DagRunModel, tr: TryRecord, op: SparkJobOperator | None) -> dict[str, Any]:
        ti = run.ti

        def xcom_push(key: str, value: Any) -> None:
            if key == "job_id":
                tr.jobs.append(self.server.by_id.get(str(value)))

        fake_ti = SimpleNamespace(
            dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index,
            try_number=tr.try_number, max_tries=ti.max_tries, task=SimpleNamespace(retries=ti.retries),
            start_date=dt.datetime.fromtimestamp(EPOCH + tr.started_at, dt.timezone.utc), xcom_push=xcom_push,
        )
        dag_run = SimpleNamespace(run_id=run.run_id, start_date=run.start_date, run_after=run.start_date,
                                  clear_number=run.clear_number)
        return {"ti": fake_ti, "task_instance": fake_ti, "dag_run": dag_run, "run_id": run.run_id, "task": op}

    def make_operator(self, run: DagRunModel) -> SparkJobOperator:
        plan = self.plan
        return self.operator_cls(
            task_id=run.ti.task_id, job={"application": "local:///app.py"}, conn_id=CONN_ID, deferrable=True,
            job_timeout=plan.job_timeout, poll_interval=plan.poll_interval,
            poll_policy={"error_budget": plan.error_budget}, retries=run.ti.retries, log_tail_lines=10,
        )

    async def worker(self, run: DagRunModel, tr: TryRecord, resume: tuple[str, dict[str, Any], dict[str, Any]] | None,
                     ) -> None:
        """One worker process running ``execute`` or a resume method of a fresh operator."""
        ti = run.ti
        op = self.make_operator(run)
        ctx = self.context(run, tr, op)
        # What the task runner passes, so that the SDK's ExecutorSafeguard sees a real run.
        sentinel = {f"{type(op).__name__}__sentinel": ExecutorSafeguard.sentinel_value}
        if resume is None:
            def call() -> Any:
                return op.execute(context=ctx, **sentinel)
        else:
            method, payload, next_kwargs = resume

            def call() -> Any:
                return getattr(op, method)(context=ctx, event=payload, **next_kwargs)

        kind, value, glet = await drive_worker(call)
        if kind == "raise" and isinstance(value, Crashed):
            kind = "crash"
        if run.deleted or ti.state != "running":
            if kind == "crash":
                self.crashed.append(glet)
            return
        if kind == "return":
            tr.result = value
            self.outcome(tr, "success")
            ti.state, ti.ended = "success", "success"
        elif kind == "crash":
            self.crashed.append(glet)

            def zombie() -> None:
                if ti.state == "running" and ti.try_number == tr.try_number and not run.deleted:
                    self.fail_try(run, tr, "crashed", None)

            self.later(self.rng.uniform(30, 600), zombie)  # the heartbeat times out
        elif isinstance(value, TaskDeferred):
            self.defer(run, tr, value)
        else:
            self.fail_try(run, tr, "failed", value)

    # -- deferral and the triggerers ----------------------------------------------------------------

    def defer(self, run: DagRunModel, tr: TryRecord, deferred: TaskDeferred) -> None:
        classpath, kwargs = deferred.trigger.serialize()
        kwargs = json.loads(json.dumps(kwargs))  # stored in the metadata database as JSON
        rebuilt = self.rebuild(classpath, kwargs)
        if rebuilt.serialize() != (classpath, kwargs):
            self.violate("I4", f"trigger kwargs do not survive a rebuild: {kwargs!r} -> {rebuilt.serialize()[1]!r}")
        if kwargs.get("deadline") is not None:
            tr.deadline = float(kwargs["deadline"]) - EPOCH
        rec = TriggerRec(id=len(self.triggers) + 1, run=run, try_number=tr.try_number, classpath=classpath,
                         kwargs=kwargs, method=deferred.method_name, next_kwargs=dict(deferred.kwargs or {}),
                         assigned=self.rng.choice(("A", "B")))
        self.triggers.append(rec)
        run.ti.state, run.ti.trigger_id = "deferred", rec.id
        if deferred.timeout is not None:
            timeout = deferred.timeout.total_seconds() if hasattr(deferred.timeout, "total_seconds") else float(
                deferred.timeout)

            def timed_out() -> None:
                if run.ti.state == "deferred" and run.ti.trigger_id == rec.id:
                    self.cancel_copies(rec, user_action=False)
                    run.ti.trigger_id = None
                    self.fail_try(run, tr, "timeout", None)

            self.later(timeout, timed_out)
        self.start(rec, rec.assigned)

    def rebuild(self, classpath: str, kwargs: dict[str, Any]) -> SparkJobTrigger:
        module, _, name = classpath.rpartition(".")
        assert module == self.trigger_cls.__module__, classpath
        return getattr(__import__(module, fromlist=[name]), name)(**kwargs)  # type: ignore[no-any-return]

    def start(self, rec: TriggerRec, triggerer: str) -> None:
        if not self.triggerer_up[triggerer] or triggerer in rec.copies:
            return
        rec.copies[triggerer] = self.spawn(self.run_trigger(rec, triggerer))

    async def run_trigger(self, rec: TriggerRec, triggerer: str) -> None:
        """What ``TriggerRunner.run_trigger`` does with one trigger."""
        ROLE.set("triggerer")
        record = TriggerRun(rec, triggerer)
        self.trigger_runs.append(record)
        try:
            trigger = self.rebuild(rec.classpath, rec.kwargs)
            ti = rec.run.ti
            trigger.task_instance = SimpleNamespace(dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id,
                                                    map_index=ti.map_index, try_number=rec.try_number)
            try:
                async for event in trigger.run():
                    record.events += 1
                    self.on_event(rec, event.payload)
            except asyncio.CancelledError as exc:
                record.cancelled = True
                if exc.args and exc.args[0] == USER_ACTION:
                    record.on_kill = True
                    try:
                        await asyncio.wait_for(trigger.on_kill(), timeout=ON_KILL_LIMIT)
                    except TimeoutError:
                        self.violate("I3", f"on_kill of trigger {rec.id} took longer than Airflow's "
                                           f"{ON_KILL_LIMIT:.0f}s limit and was abandoned")
                    except asyncio.CancelledError:
                        pass
                    except Exception as kill_exc:
                        record.error = kill_exc
                        self.violate("I4", f"on_kill of trigger {rec.id} raised {kill_exc!r}")
                raise
            except Exception as exc:
                record.error = exc
                self.violate("I4", f"trigger {rec.id} on {triggerer} died without an event: {exc!r}")
                self.on_trigger_failure(rec, exc)
                return
            if record.events != 1:
                self.violate("I4", f"trigger {rec.id} on {triggerer} yielded {record.events} events")
        finally:
            if rec.copies.get(triggerer) is asyncio.current_task():
                del rec.copies[triggerer]

    def on_event(self, rec: TriggerRec, payload: dict[str, Any]) -> None:
        ti = rec.run.ti
        if rec.run.deleted or ti.state != "deferred" or ti.trigger_id != rec.id:
            return  # Airflow drops an event for a task instance that moved on
        ti.state, ti.trigger_id = "scheduled", None
        ti.resume = (rec.method, payload, rec.next_kwargs)
        # The trigger row is now unused: other triggerers still running it cancel it with on_kill.
        self.later(self.rng.uniform(0, 30), lambda: self.cancel_copies(rec, user_action=True))

    def on_trigger_failure(self, rec: TriggerRec, exc: BaseException) -> None:
        ti = rec.run.ti
        if rec.run.deleted or ti.state != "deferred" or ti.trigger_id != rec.id:
            return
        ti.trigger_id = None
        ti.state = "running"
        self.fail_try(rec.run, rec.run.ti.tries[rec.try_number], "trigger_failed", exc)

    def cancel_copies(self, rec: TriggerRec, *, user_action: bool, by_user: bool = False) -> None:
        if by_user and not rec.copies:
            # No triggerer runs the trigger right now (one is restarting): Airflow calls no on_kill
            # at all, the package is never told; only the record and the clean-up remain (I3).
            self.unnotified += 1
        for task in list(rec.copies.values()):
            if user_action:
                task.cancel(USER_ACTION)
            else:
                task.cancel()

    # -- chaos --------------------------------------------------------------------------------------

    def act(self, kind: str) -> None:
        rng = self.rng
        run = self.runs[-1]
        ti = run.ti
        rec = next((r for r in self.triggers if r.id == ti.trigger_id), None) if ti.state == "deferred" else None
        if kind == "triggerer_restart":
            name = rng.choice(("A", "B"))
            self.triggerer_up[name] = False
            for r in self.triggers:
                task = r.copies.get(name)
                if task is not None:
                    task.cancel()

            def back() -> None:
                self.triggerer_up[name] = True
                for r in self.triggers:
                    live = r.run.ti
                    waiting = live.state == "deferred" and live.trigger_id == r.id
                    if r.assigned == name and not r.run.deleted and waiting:
                        self.start(r, name)

            self.later(rng.uniform(1, 600), back)
        elif kind == "failover" and rec is not None:
            old, new = rec.assigned, "B" if rec.assigned == "A" else "A"
            rec.assigned = new
            self.start(rec, new)

            def drop_old() -> None:
                task = rec.copies.get(old)
                if task is not None and rec.assigned != old:  # not if it moved back there meanwhile
                    task.cancel(USER_ACTION)

            self.later(rng.uniform(0, 120), drop_old)
        elif kind in ("mark_failed", "mark_success") and ti.state in ("deferred", "up_for_retry"):
            tr = ti.tries[ti.try_number]
            if tr.outcome is None:
                self.outcome(tr, "killed")
            ti.state = ti.ended = "failed" if kind == "mark_failed" else "success"
            ti.ended = kind
            if rec is not None:
                ti.trigger_id = None
                self.cancel_copies(rec, user_action=True, by_user=True)
        elif kind == "clear" and (ti.state in ("deferred", "success", "failed", "up_for_retry")):
            tr = ti.tries.get(ti.try_number)
            if tr is not None and tr.outcome is None:
                self.outcome(tr, "killed")
            ti.state, ti.trigger_id, ti.resume, ti.ended = None, None, None, None
            ti.max_tries = ti.try_number + ti.retries
            run.clear_number += 1
            if rec is not None:
                self.cancel_copies(rec, user_action=True, by_user=True)

            def schedule() -> None:
                if ti.state is None and not run.deleted:
                    ti.try_number += 1
                    ti.state = "scheduled"

            self.later(rng.uniform(0, 60), schedule)
        elif kind == "delete_run" and ti.state != "running" and not run.deleted:
            tr = ti.tries.get(ti.try_number)
            if tr is not None and tr.outcome is None:
                self.outcome(tr, "deleted")
            run.deleted = True
            ti.state, ti.ended = "deleted", "deleted"
            self.deletes += 1
            if rec is not None:
                self.cancel_copies(rec, user_action=True, by_user=True)
            self.pending_runs += 1

            def recreate() -> None:
                self.pending_runs -= 1
                self.new_run()

            self.later(rng.uniform(0, 120), recreate)
        elif kind == "server_restart":
            self.server.restart()


# -- installing the world into the package -----------------------------------------------------------


@contextmanager
def installed(world: World) -> Iterator[None]:
    """Point the package's seams (clock, sync bridge, ledger, connections) at ``world``."""
    global _current
    import asgiref.sync

    # Airflow 3.0's BaseHook has no aget_connection: the world adds one, and removes it after
    originals = (BaseHook.__dict__["get_connection"], BaseHook.__dict__.get("aget_connection"),
                 asgiref.sync.sync_to_async, core_backend.deployment_salt)

    def get_connection(cls: type, conn_id: str) -> Connection:
        return current_world().connection()

    async def aget_connection(cls: type, conn_id: str) -> Connection:
        return await current_world().aconnection()

    def sync_to_async(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
        async def inline(*a: Any, **kw: Any) -> Any:
            return fn(*a, **kw)

        return inline

    _current = world
    # The core's jitter draws from the global random module: seed it, or a seed would not replay.
    random_state = random.getstate()
    random.seed(f"{world.semantics}:{world.seed}:jitter")
    retry.set_clock(world.loop.now, world.loop.time)
    runtime.set_runner(runner)
    ledger.set_default_ledger(world.ledger)
    BaseHook.get_connection = classmethod(get_connection)  # type: ignore[method-assign,assignment]
    BaseHook.aget_connection = classmethod(aget_connection)  # type: ignore[method-assign,assignment]
    asgiref.sync.sync_to_async = sync_to_async  # type: ignore[assignment]
    core_backend.deployment_salt = lambda: world.salt  # Airflow's config, read once per world (it is slow)
    runtime.reset_backends()  # backends are cached per process; a world is one deployment's life
    try:
        yield
    finally:
        (BaseHook.get_connection, BaseHook.aget_connection, asgiref.sync.sync_to_async,  # type: ignore[method-assign]
         core_backend.deployment_salt) = originals
        if originals[1] is None:
            del BaseHook.aget_connection
        ledger.set_default_ledger(None)
        runtime.reset_backends()
        random.setstate(random_state)
        runtime.set_runner()
        retry.set_clock()
        _current = None


@contextmanager
def quiet() -> Iterator[None]:
    """Drop the package's log lines (thousands per schedule); ``--verbose`` runs without this."""
    import structlog

    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
        structlog.configure(**saved)


def run_world(world: World) -> World:
    """Run one schedule to its end and check it; violations end up in ``world.violations``."""
    with installed(world):
        loop = world.loop
        try:
            loop.run_until_complete(world.main())
        except SimulationStuck as exc:
            world.violate("liveness", str(exc))
        finally:
            check(world)
            for glet in world.crashed:
                bury(glet)
            _shutdown(loop)
    return world


def _shutdown(loop: VirtualLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        try:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        except (SimulationStuck, RuntimeError):
            pass
    loop.close()


__all__ = ["Plan", "World", "current_world", "installed", "quiet", "run_world"]
