"""In-process backend models: one server per world, one ``Backend`` subclass per semantics.

The server holds the *truth* the checker reads (every job ever created, when it ran, when a
cancel was asked for, when it ended); the ``Backend`` subclasses are what the package's real
operator, trigger and watcher talk to, and they inject a fault at every await point.

Semantics modelled (one ``Backend`` class each, see :data:`MODELS`):

* ``lookup`` — jobs carry their key and can be listed by key family (Livy batch names, EMR
  step names): ``supports_find_by_key``;
* ``ledger`` — the API knows nothing of keys (Spark standalone's REST server): the core's
  ledger is the only record; statuses carry no key;
* ``token`` — the API deduplicates a submission by its token (Databricks idempotency token,
  EMR Serverless client token): ``idempotent_submit``, the same key returns the same job;
* ``reuse`` — like ``lookup``, but the server restarts without recovery: it forgets its jobs
  and hands their ids out again, to other tenants' jobs (Livy without recovery).

Every model has cancelling states: a cancel usually takes a while (``CANCELLING``) before
the job is ``CANCELLED``; jobs run for a virtual duration, then succeed or fail.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_spark_async.core.backend import Backend, JobState, JobStatus, parse_key
from airflow_spark_async.core.errors import (
    AuthError,
    ConnectionFailed,
    JobNotFoundError,
    RateLimitedError,
    ServerError,
)
from airflow_spark_async.core.http import parse_retry_after
from airflow_spark_async.core.trigger import SparkJobTrigger
from tests.sim.vloop import ROLE, Crashed

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_spark_async.core.spec import SparkJob
    from tests.sim.world import World

#: a job the server forgot in a restart: it counts as ended for the invariants
LOST = "lost"

#: Retry-After headers a server may send, as text (parsed by the core's parser) ...
RETRY_AFTER_HEADERS: tuple[str | None, ...] = (None, "0", "5", "86400", "inf", "nan", "-5", "1e308",
                                               "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 2100 00:00:00 GMT")
#: ... and as numbers a backend computed itself (an SDK's throttling hint)
RETRY_AFTER_VALUES: tuple[float | None, ...] = (None, 0.0, 5.0, 86400.0, math.inf, math.nan, -5.0)


@dataclasses.dataclass
class SimJob:
    """One job on the model server; its state at any virtual time follows from these fields."""

    job_id: str
    key: str | None
    foreign: bool
    submitted_at: float
    runs_from: float
    ends_at: float
    succeeds: bool
    cancel_takes: float
    cancel_requested_at: float | None = None
    cancelled_by_us: bool = False
    lost_at: float | None = None
    answer_lost: bool = False  # the submit was applied but its answer never reached the caller
    recorded: bool = False  # its id was written to the ledger at least once (backends without lookup)

    @property
    def family(self) -> str | None:
        parsed = parse_key(self.key or "")
        return parsed.family if parsed else None

    @property
    def generation(self) -> int | None:
        parsed = parse_key(self.key or "")
        return parsed.generation if parsed else None

    def state(self, t: float) -> JobState | str:
        """The job's state at virtual time ``t`` (``LOST`` once the server forgot it)."""
        if self.lost_at is not None and t >= self.lost_at:
            return LOST
        cancel_done = None if self.cancel_requested_at is None else self.cancel_requested_at + self.cancel_takes
        if cancel_done is not None and cancel_done < self.ends_at and t >= cancel_done:
            return JobState.CANCELLED
        if t >= self.ends_at:
            return JobState.SUCCEEDED if self.succeeds else JobState.FAILED
        if self.cancel_requested_at is not None and t >= self.cancel_requested_at:
            return JobState.CANCELLING
        return JobState.PENDING if t < self.runs_from else JobState.RUNNING

    def live_until(self) -> float:
        """End of the interval in which the job runs with nobody having asked it to stop (I1)."""
        ends = [self.ends_at]
        if self.cancel_requested_at is not None:
            ends.append(self.cancel_requested_at)
        if self.lost_at is not None:
            ends.append(self.lost_at)
        return min(ends)

    def live_at(self, t: float) -> bool:
        return self.state(t) in (JobState.PENDING, JobState.RUNNING)


class Server:
    """The model server of one world: the jobs, their ids, restarts, other tenants."""

    def __init__(self, world: World, semantics: str) -> None:
        self.world = world
        self.semantics = semantics
        self.jobs: list[SimJob] = []  # every job ever created, for the checker
        self.by_id: dict[str, SimJob] = {}  # what the API currently knows
        self.by_token: dict[str, SimJob] = {}
        self.next_id = 0
        self.restarts = 0

    @property
    def now(self) -> float:
        return self.world.loop.vtime

    def create(self, key: str | None, *, foreign: bool = False) -> SimJob:
        rng = self.world.rng
        now = self.now
        roll = rng.random()
        duration = rng.uniform(1, 30) if roll < 0.4 else rng.uniform(30, 600) if roll < 0.85 else rng.uniform(
            600, 4000)
        succeeds = rng.random() < 0.75
        scripted = self.world.plan.jobs
        if scripted and not foreign:
            duration, succeeds = scripted.pop(0)
        job = SimJob(
            job_id=f"job-{self.next_id}" if self.semantics != "reuse" else str(self.next_id),
            key=key,
            foreign=foreign,
            submitted_at=now,
            runs_from=now + min(duration, rng.uniform(0, 30)),
            ends_at=now + duration,
            succeeds=succeeds,
            cancel_takes=0.0 if rng.random() < 0.3 else rng.uniform(1, 90),
        )
        self.next_id += 1
        self.jobs.append(job)
        self.by_id[job.job_id] = job
        if key is not None:
            self.by_token[key] = job
        return job

    def restart(self) -> None:
        """A restart without recovery: every known job is forgotten and ids start again."""
        now = self.now
        for job in self.by_id.values():
            if job.lost_at is None and job.state(now) not in (JobState.SUCCEEDED, JobState.FAILED,
                                                               JobState.CANCELLED):
                job.lost_at = now
        self.by_id.clear()
        self.by_token.clear()
        self.next_id = 0
        self.restarts += 1
        for _ in range(self.world.rng.randint(1, 4)):  # other tenants get the old ids at once
            self.create(f"other-tenant-{self.world.rng.randint(0, 9)}", foreign=True)

    def status_of(self, job: SimJob) -> JobStatus:
        state = job.state(self.now)
        assert isinstance(state, JobState)
        carries_key = self.semantics != "ledger"
        return JobStatus(job_id=job.job_id, state=state, backend_state=state.name,
                         key=job.key if carries_key else None)


class SimBackend(Backend):
    """The package's view of the model server; every await point may fail as configured."""

    name: ClassVar[str] = "sim"
    semantics: ClassVar[str] = ""

    def __init__(self, world: World) -> None:
        self.world = world
        self.server = world.server

    @classmethod
    async def from_connection(cls, conn: Connection, options: Mapping[str, Any]) -> Backend:
        from tests.sim.world import current_world

        world = current_world()
        await world.fault("from_connection", "before")
        return cls(world)

    @property
    def watch_key(self) -> str:
        return f"sim://{self.semantics}"

    # -- faults ---------------------------------------------------------------------------

    async def _before(self, op: str) -> None:
        await self.world.fault(op, "before")

    async def _after(self, op: str) -> None:
        await self.world.fault(op, "after")

    def _known(self, job_id: str) -> SimJob:
        job = self.server.by_id.get(job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id}", status=404)
        return job

    # -- the protocol ---------------------------------------------------------------------

    async def submit(self, job: SparkJob, *, key: str, attempt: int | None = None) -> JobStatus:
        await self._before("submit")
        # Like Databricks' idempotency_token and EMR Serverless' clientToken as the backends send
        # them: one token per try (the core passes ``attempt``), so a resend within a try gets the
        # same job back and a retry never gets an earlier try's.
        token = f"{key}.{attempt}"
        existing = self.server.by_token.get(token) if self.idempotent_submit else None
        created = existing or self.server.create(key)
        if self.idempotent_submit:
            self.server.by_token[token] = created
        try:
            await self._after("submit")
        except BaseException:
            created.answer_lost = existing is None
            raise
        return self.server.status_of(created)

    async def status(self, job_id: str) -> JobStatus:
        await self._before("status")
        job = self._known(job_id)
        await self._after("status")
        return self.server.status_of(job)

    async def status_many(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus] | None:
        await self._before("status_many")
        rng = self.world.rng
        partial = self.world.faulty("status_many") and rng.random() < 0.5
        listed = {job_id: self.server.status_of(job) for job_id, job in self.server.by_id.items()
                  if not (partial and rng.random() < 0.5)}
        await self._after("status_many")
        return listed

    async def cancel(self, job_id: str, key: str | None = None) -> None:
        await self._before("cancel")
        job = self._known(job_id)
        carries_key = self.semantics != "ledger"
        if key is not None and carries_key and job.key != key:
            return  # the API refuses to act on another key's job: nothing happens
        self.world.note_cancel(job)
        if job.cancel_requested_at is None and job.state(self.server.now) not in (
                JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
            job.cancel_requested_at = self.server.now
        await self._after("cancel")

    async def logs(self, job_id: str, *, tail_lines: int) -> str | None:
        await self._before("logs")
        self._known(job_id)
        await self._after("logs")
        return "a log line"

    async def find_jobs(self, family: str) -> Sequence[JobStatus]:
        if not self.supports_find_by_key:
            raise NotImplementedError
        await self._before("find_jobs")
        found = [self.server.status_of(job) for job in reversed(list(self.server.by_id.values()))
                 if job.family == family]
        await self._after("find_jobs")
        return found


class LookupBackend(SimBackend):
    semantics = "lookup"
    supports_find_by_key = True


class LedgerBackend(SimBackend):
    semantics = "ledger"


class TokenBackend(SimBackend):
    semantics = "token"
    idempotent_submit = True


class ReuseBackend(SimBackend):
    semantics = "reuse"
    supports_find_by_key = True


class LookupTrigger(SparkJobTrigger):
    backend_class = LookupBackend


class LedgerTrigger(SparkJobTrigger):
    backend_class = LedgerBackend


class TokenTrigger(SparkJobTrigger):
    backend_class = TokenBackend


class ReuseTrigger(SparkJobTrigger):
    backend_class = ReuseBackend


for _trigger in (LookupTrigger, LedgerTrigger, TokenTrigger, ReuseTrigger):

    async def _read_task_state(self: SparkJobTrigger) -> str | None:
        """The Airflow model answers (or fails to), in place of the Task SDK's API call."""
        from tests.sim.world import current_world

        return await current_world().read_task_state(self)

    _trigger.read_task_state = _read_task_state  # type: ignore[method-assign]

#: semantics name -> trigger class (the operator is built per world in :mod:`tests.sim.world`)
MODELS: dict[str, type[SparkJobTrigger]] = {
    "lookup": LookupTrigger,
    "ledger": LedgerTrigger,
    "token": TokenTrigger,
    "reuse": ReuseTrigger,
}


def fault_exception(op: str, rng: random.Random) -> BaseException:
    """One server-side failure of ``op``: 429 with any Retry-After, 5xx, reset, 401, 404."""
    roll = rng.random()
    if roll < 0.3:
        if rng.random() < 0.5:
            retry_after = parse_retry_after(rng.choice(RETRY_AFTER_HEADERS))
        else:
            retry_after = rng.choice(RETRY_AFTER_VALUES)
        return RateLimitedError(f"429 on {op}", status=429, retry_after=retry_after)
    if roll < 0.55:
        return ServerError(f"503 on {op}", status=503, retry_after=rng.choice(RETRY_AFTER_VALUES))
    if roll < 0.8:
        return ConnectionFailed(f"connection reset during {op}")
    if roll < 0.9:
        return AuthError(f"401 on {op}", status=401)
    return JobNotFoundError(f"404 on {op} (a proxy's answer)", status=404)


def slow(rng: random.Random) -> float:
    """How long a slow answer takes: most are quick, some take longer than the HTTP timeout."""
    return rng.choice((rng.uniform(0, 2), rng.uniform(2, 29), rng.uniform(29, 120)))


def crash_allowed() -> bool:
    """Only a worker process can crash at an await point; triggerer crashes are restarts."""
    return ROLE.get() == "worker"


__all__ = ["LOST", "MODELS", "Crashed", "Server", "SimBackend", "SimJob", "fault_exception", "slow"]
