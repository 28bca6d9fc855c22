"""The invariants I1-I4 (DESIGN.md, issue 9), checked against the model's truth after a schedule.

The checker never trusts what the package logged or returned about a job: it reads the model
server's record of every job (when it was submitted, when someone asked it to stop, when it
ended) and the Airflow model's record of every try.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_spark_async.core.backend import JobState
from airflow_spark_async.core.ledger import MemoryLedger, read_entry

if TYPE_CHECKING:
    from tests.sim.backends import SimJob
    from tests.sim.world import DagRunModel, World

#: I1: how long two jobs of one task instance may both run, unstopped, after a lost-answer race
#: before one of them is asked to stop. The core documents no convergence window: 0.
RACE_WINDOW = 0.0
#: how a package-decided failure is told apart from Airflow's own (crash, user action, timeout)
PACKAGE_FAILURE = "failed"


#: marks a violation in the one window the docs admit (docs/concepts.md, "What each backend can
#: guarantee"): on a backend that cannot look keys up, a job whose id never reached the ledger (a
#: lost submit answer, a worker death or a failed Variable write between submit and record)
UNRECORDABLE = "(the first one was never recorded: no lookup by key can find it)"


def documented(violation: str) -> bool:
    """Whether a violation is of the documented window only."""
    return UNRECORDABLE in violation


def check(world: World) -> None:
    end = world.now()
    for run in world.runs:
        jobs = [j for j in world.server.jobs if not j.foreign and j.family == run.family]
        _i1(world, run, jobs)
        _i2(world, run)
        _i3(world, run, jobs, end)
        _i4(world, run)
    for job in world.foreign_cancels:
        world.violate("I2", f"the package cancelled job {job.job_id} of another task ({job.key}): a reused id")


def _i1(world: World, run: DagRunModel, jobs: list[SimJob]) -> None:
    ordered = sorted(jobs, key=lambda j: j.submitted_at)
    for i, first in enumerate(ordered):
        for second in ordered[i + 1:]:
            overlap = min(first.live_until(), second.live_until()) - second.submitted_at
            if overlap > RACE_WINDOW:
                lost = " (the first one's submit answer was lost)" if first.answer_lost else ""
                if not world.trigger_cls.backend_class.supports_find_by_key and not first.recorded:
                    lost += f" {UNRECORDABLE}"
                world.violate("I1", f"jobs {first.job_id} ({first.key}) and {second.job_id} ({second.key}) of one "
                                    f"task instance ran together for {overlap:.0f}s{lost}")


def _i2(world: World, run: DagRunModel) -> None:
    for tr in run.ti.tries.values():
        if tr.outcome == "success":
            candidates = [j for j in tr.jobs if j is not None]
            job = candidates[-1] if candidates else None
            if job is None or job.foreign or job.family != run.family:
                world.violate("I2", f"try {tr.try_number} succeeded without a job of this DAG run instance "
                                    f"({job.key if job else 'no job'})")
                continue
            assert tr.outcome_at is not None
            state = job.state(tr.outcome_at)
            if state is not JobState.SUCCEEDED:
                world.violate("I2", f"try {tr.try_number} succeeded but its job {job.job_id} was {state}")
            elif job.ends_at < tr.started_at:
                world.violate("I2", f"try {tr.try_number} succeeded with job {job.job_id}, which had ended "
                                    "before the try started (an earlier try's result)")
            elif job.generation != tr.generation:
                world.violate("I2", f"try {tr.try_number} (generation {tr.generation}) succeeded with job "
                                    f"{job.job_id} of generation {job.generation}: a clear did not restart")
        elif tr.outcome == PACKAGE_FAILURE:
            assert tr.outcome_at is not None
            for job in {id(j): j for j in tr.jobs if j is not None}.values():
                # A job the server has forgotten (a restart without recovery) cannot be known to
                # have succeeded: failing then is all the package can do.
                known = world.server.by_id.get(job.job_id) is job
                # A timeout is fair for a job that succeeded only after its deadline.
                in_time = not _is_timeout(tr.error) or tr.deadline is None or job.ends_at <= tr.deadline
                if known and in_time and job.family == run.family and job.generation == tr.generation \
                        and job.state(tr.outcome_at) is JobState.SUCCEEDED and job.ends_at >= tr.started_at:
                    world.violate("I2", f"try {tr.try_number} failed ({type(tr.error).__name__}: {tr.error}) "
                                        f"although its job {job.job_id} had succeeded")


def _is_timeout(error: BaseException | None) -> bool:
    from airflow_spark_async.core.operator import SparkJobTimeout

    return isinstance(error, SparkJobTimeout)


def _recorded(world: World, run: DagRunModel, job: SimJob) -> bool:
    """Whether a job left running can be found again: by key on the server, or in the ledger."""
    backend = world.trigger_cls.backend_class
    if backend.supports_find_by_key:
        return world.server.by_id.get(job.job_id) is job and job.key is not None
    entry = read_entry(_plain(world), run.family, backend.name)
    if entry is None:
        return False
    return entry.job_id == job.job_id or (entry.job_id is None and entry.key == job.key)


def _plain(world: World) -> MemoryLedger:
    """The ledger's entries, read without injecting faults."""
    plain = MemoryLedger()
    plain.entries = dict(world.ledger.entries)
    return plain


def _i3(world: World, run: DagRunModel, jobs: list[SimJob], end: float) -> None:
    ti = run.ti
    if ti.state not in ("success", "failed", "deleted"):
        return  # liveness reports it
    strict = world.faults_injected == 0 and not world.deletes and not world.unnotified and ti.ended in (
        "success", PACKAGE_FAILURE, "mark_failed", "mark_success")
    for job in jobs:
        if not job.live_at(end):
            continue
        if strict:
            world.violate("I3", f"task ended ({ti.ended}) without any fault, but job {job.job_id} ({job.key}) "
                                "was left running")
        elif not _recorded(world, run, job):
            never = "" if world.trigger_cls.backend_class.supports_find_by_key or job.recorded else (
                f" {UNRECORDABLE}")
            world.violate("I3", f"task ended ({ti.ended}) and job {job.job_id} ({job.key}) was left running "
                                f"with no record of it (no ledger entry, not findable by key){never}")


def _i4(world: World, run: DagRunModel) -> None:
    ti = run.ti
    if ti.state not in ("success", "failed", "deleted"):
        return
    for tr in ti.tries.values():
        if tr.outcome is None and ti.state != "deleted":
            world.violate("I4", f"try {tr.try_number} ended without an outcome")
