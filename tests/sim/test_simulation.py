"""The fault-schedule simulation in the default suite: seeded sweeps per backend model, and
hand-written schedules that pin the named defects of issue 9. See docs/simulation.md.

``ASA_SIM_SCHEDULES`` changes the sweep size (5,000 per model in the suite; set it to 10000, or use
the CLI, for the full sweep); a failing seed is printed with the one-line command that replays it.
"""

from __future__ import annotations

import dataclasses
import math
import os

import pytest

from airflow_spark_async.core.backend import JobState
from airflow_spark_async.core.errors import ConnectionFailed, JobNotFoundError, RateLimitedError
from tests.sim.backends import MODELS
from tests.sim.checker import documented
from tests.sim.run import report, run_schedules
from tests.sim.world import Plan, World, quiet, run_world

SCHEDULES = int(os.environ.get("ASA_SIM_SCHEDULES", "5000"))
PROCESSES = 2  # the machine the suite is sized for has two cores

#: at most this share of schedules may end in the documented window of ledger-only backends (a
#: job that never reached the ledger); the sweeps' fault rates make it far likelier than in life
DOCUMENTED_WINDOW_SHARE = 0.05


@pytest.mark.parametrize("model", list(MODELS))
def test_sweep(model: str) -> None:
    """I1-I4 hold after every one of ``SCHEDULES`` seeded fault schedules of this backend model —
    except, and only on backends that cannot look keys up, the documented window of a job whose id
    never reached the ledger, which is counted and bounded instead."""
    summary = run_schedules(model, SCHEDULES, processes=PROCESSES)
    real = [f for f in summary.failures if not all(documented(v) for v in f.violations)]
    window = len(summary.failures) - len(real)
    print(f"{model}: {summary.schedules} schedules, {len(real)} violating, {window} in the documented window")
    assert not real, report(dataclasses.replace(summary, failures=real))
    assert window <= DOCUMENTED_WINDOW_SHARE * summary.schedules, report(summary)
    if MODELS[model].backend_class.supports_find_by_key:
        assert window == 0


def test_a_seed_replays_identically() -> None:
    """Determinism: the same seed gives the same schedule whatever ran before it in the process (the
    reproduction line relies on it; the core's jitter uses the global random module)."""
    import random

    def fingerprint() -> tuple[object, ...]:
        random.random()
        with quiet():
            world = run_world(World("lookup", 1234))
        return (world.now(), [(j.job_id, j.key, j.submitted_at, j.cancel_requested_at) for j in world.server.jobs],
                [str(v) for v in world.violations], world.faults_injected)

    assert fingerprint() == fingerprint()


# -- hand-written schedules --------------------------------------------------------------------


def _run(model: str, plan: Plan, seed: int = 0) -> World:
    with quiet():
        world = run_world(World(model, seed, plan))
    assert not world.violations, "\n".join(str(v) for v in world.violations)
    return world


def _final(world: World) -> str | None:
    return world.runs[-1].ti.state


@pytest.mark.parametrize("model", ["lookup", "token", "reuse"])
def test_lost_submit_answer(model: str) -> None:
    """The server applied the submit but the answer was lost: one job runs, the task succeeds."""
    plan = Plan(retries=1, poll_interval=10, jobs=[(300, True), (300, True)],
                forced={("submit", "after", 1): ConnectionFailed("connection reset after the server applied it")})
    world = _run(model, plan)
    assert _final(world) == "success"
    assert len(world.server.jobs) == 1


def test_lost_submit_answer_without_lookup_is_the_documented_window() -> None:
    """On a backend that cannot look keys up (Spark standalone) the same fault leaves an untracked
    job beside the retry's — the one window docs/concepts.md admits; the task still succeeds."""
    plan = Plan(retries=1, poll_interval=10, jobs=[(300, True), (300, True)],
                forced={("submit", "after", 1): ConnectionFailed("connection reset after the server applied it")})
    with quiet():
        world = run_world(World("ledger", 0, plan))
    assert _final(world) == "success"
    assert world.violations and all(documented(str(v)) for v in world.violations)


@pytest.mark.parametrize("model", list(MODELS))
def test_on_kill_with_unknown_state_during_failover(model: str) -> None:
    """A failover calls on_kill on the old triggerer while the task is still deferred, and the
    state lookup fails: the job must not be cancelled, and the task still succeeds with it."""
    plan = Plan(retries=0, poll_interval=10, jobs=[(1200, True)], chaos=[(300, "failover")],
                forced={("read_task_state", "before", n): None for n in range(1, 50)})
    plan.forced.update({("read_task_state", "before", n): RuntimeError("API server unreachable")
                        for n in range(1, 50)})
    world = _run(model, plan)
    assert _final(world) == "success"
    (job,) = world.server.jobs
    assert job.cancel_requested_at is None
    assert any(r.on_kill for r in world.trigger_runs)


@pytest.mark.parametrize("model", list(MODELS))
def test_clear_while_deferred_restarts(model: str) -> None:
    """Clear means restart: the old job is cancelled and exactly one new job runs."""
    plan = Plan(retries=1, poll_interval=10, jobs=[(2000, True), (300, True)], chaos=[(200, "clear")])
    world = _run(model, plan)
    assert _final(world) == "success"
    old, new = world.server.jobs
    assert old.cancel_requested_at is not None and old.state(world.now()) is JobState.CANCELLED
    assert old.generation != new.generation and new.state(world.now()) is JobState.SUCCEEDED


@pytest.mark.parametrize("model", list(MODELS))
def test_dag_run_recreated_with_the_same_run_id(model: str) -> None:
    """A DAG run deleted and re-created with the same run id gets its own job, never the old one's
    (the official Databricks provider's #64828)."""
    plan = Plan(retries=0, poll_interval=10, jobs=[(100, True), (300, True)], chaos=[(400, "delete_run")])
    world = _run(model, plan)
    first, second = world.runs
    assert first.family != second.family
    assert _final(world) == "success"
    jobs = [j for j in world.server.jobs if j.family == second.family]
    assert len(jobs) == 1 and jobs[0].state(world.now()) is JobState.SUCCEEDED


@pytest.mark.parametrize("model", list(MODELS))
def test_success_right_at_the_deadline(model: str) -> None:
    """The job succeeds a few seconds before its deadline, between two long polls: a success,
    never a timeout (the deadline check used to come before the poll)."""
    plan = Plan(retries=0, poll_interval=60, job_timeout=110, jobs=[(105, True)])
    world = _run(model, plan)
    assert _final(world) == "success"


@pytest.mark.parametrize("retry_after", [86400.0, math.inf])
@pytest.mark.parametrize("model", list(MODELS))
def test_retry_after_a_day_or_forever(model: str, retry_after: float) -> None:
    """A 429 with Retry-After 86400 or inf on every poll for a while: triggers keep watching (no
    freeze until the horizon) and the task ends with its job, within hours of virtual time."""
    plan = Plan(retries=0, poll_interval=10, job_timeout=3600, jobs=[(600, True)],
                forced={(op, "before", n): RateLimitedError("429", status=429, retry_after=retry_after)
                        for op in ("status", "status_many") for n in range(1, 6)})
    world = _run(model, plan)
    assert _final(world) == "success"
    assert world.now() < 3 * 3600


@pytest.mark.parametrize("model", list(MODELS))
def test_a_404_from_a_proxy_is_not_the_end_of_the_job(model: str) -> None:
    """Issue 9 defect 3: one 404 (a proxy, a load balancer) while polling and re-checking must not
    fail the task nor lose track of a job that still runs."""
    plan = Plan(retries=1, poll_interval=10, jobs=[(600, True), (600, True)],
                forced={("status", "before", n): JobNotFoundError("404 from a proxy", status=404) for n in (2, 3)})
    world = _run(model, plan)
    assert _final(world) == "success"
    assert len(world.server.jobs) == 1


# -- seeds that exposed a defect, replayed (a seed's schedule is fixed as long as the model is) ----------

REGRESSION_SEEDS = [
    # the pre-submit look-up of a backend without lookup by key trusted one 404 (a proxy's) for the
    # recorded job of an earlier generation: it was neither cancelled nor kept (I1)
    ("ledger", 1443),
    # an idempotency token per key generation handed the retry the earlier try's job (I2, #64828)
    ("token", 98),
    # unreachable and error re-checks shared one budget, then a job just read as running was cancelled (I2)
    ("lookup", 1209),
    # past the deadline, the re-checks of a job whose state could not be read gave up after the error
    # budget although the job had succeeded in time (I2)
    ("token", 6378),
]
#: seeds that end in the documented window only (a job that never reached the ledger)
DOCUMENTED_SEEDS = [("ledger", 156), ("ledger", 78)]


@pytest.mark.parametrize(("model", "seed"), DOCUMENTED_SEEDS)
def test_documented_window_seed(model: str, seed: int) -> None:
    with quiet():
        world = run_world(World(model, seed))
    assert all(documented(str(v)) for v in world.violations), "\n".join(str(v) for v in world.violations)


@pytest.mark.parametrize(("model", "seed"), REGRESSION_SEEDS)
def test_regression_seed(model: str, seed: int) -> None:
    with quiet():
        world = run_world(World(model, seed))
    assert not world.violations, "\n".join(str(v) for v in world.violations)


# -- the checker is not vacuous: a core with a known defect put back must be caught ------------------


def test_checker_catches_on_kill_cancelling_a_moved_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put defect 2 back (on_kill cancels whatever the task's state): a failover kills a healthy job."""
    from airflow_spark_async.core import trigger

    monkeypatch.setattr(trigger, "LIVE_TASK_STATES", frozenset())
    plan = Plan(retries=0, poll_interval=10, jobs=[(1200, True)], chaos=[(300, "failover")])
    with quiet():
        world = run_world(World("lookup", 0, plan))
    assert any("healthy job killed" in str(v) for v in world.violations), world.violations


def test_checker_catches_a_retry_that_does_not_look_for_the_running_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put defect 7 back (no look at the ledger before submitting): a worker that died after the
    submit gets a retry that submits a second job beside the first (I1). (With lookup by key the
    after-submit race check would still converge on one job.)"""
    from airflow_spark_async.core.operator import SparkJobOperator

    async def nothing_known(self: object, backend: object, family: str, key: str) -> list[object]:
        return []

    monkeypatch.setattr(SparkJobOperator, "_known_jobs", nothing_known)
    plan = Plan(retries=1, poll_interval=10, jobs=[(1200, True), (1200, True)],
                forced={("status", "before", 1): JobNotFoundError("404 from a proxy", status=404),
                        ("status", "before", 2): "crash"})
    with quiet():
        world = run_world(World("ledger", 0, plan))
    assert any(v.invariant == "I1" for v in world.violations), world.violations
