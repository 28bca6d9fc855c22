"""The exactly-once contract (docs/concepts.md, I1-I4) in a real Airflow 3 — scheduler,
dag-processor, triggerer, api-server, LocalExecutor, PostgreSQL — written once and run against every
backend (tests/e2e/backends.py says how each service is driven):

* **mark failed** — marking a deferred task failed makes its trigger's ``on_kill`` cancel the job (I3);
* **deadline** — a job that outlives ``job_timeout`` is cancelled while the task is deferred (I3, I4);
* **a moved trigger** — Airflow calls ``on_kill`` also when a trigger merely moves to another
  triggerer; the guard sees the task still deferred and leaves the job running (I2, I3);
* **slot release** — with :data:`SLOTS` worker slots, more jobs than slots run at once (deferral);
* **triggerer SIGKILL** — a new triggerer picks the deferred task up; the run succeeds in its first
  try with exactly one job (I1, I4);

The slot and SIGKILL scenarios of all backends run at once (a module fixture starts them, one test
per backend checks its part): their time is waiting for jobs, task runs and a triggerer restart,
which the backends then share instead of paying it four times.
plus the example DAGs that only one backend has (EMR's create → step → terminate pipeline,
Databricks' notebook, python and jar DAGs).

Jobs and polls are >= 5 s: Airflow 3.3.2 has a scheduler race for shorter deferrals (#66374).
The SIGKILL scenarios run last: under load, a trigger created seconds after a restarted triggerer
took over a crashed one's trigger was seen never to start (an Airflow-side behaviour, noted in
docs/development.md), which would starve the scenarios that follow. The mark-failed scenarios run
first, on a quiet triggerer: ``on_kill`` asks Airflow for the task's state within Airflow's limit.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from dataclasses import dataclass, field

import pytest

from airflow_spark_async.core.airflow_versions import TRIGGER_ON_KILL
from tests.e2e.airflow_stack import AirflowStack
from tests.e2e.backends import BACKENDS, SLOTS, Backend, Servers, Ti, db_rows, live_triggerers, set_parallelism

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

ALL = ["standalone", "livy", "emr", "databricks"]
#: A job that must outlive the scenario (it ends cancelled): ten minutes, far beyond any wait.
FOREVER = 600
#: Slot scenario: how long the backends' jobs may wait to be seen side by side before they are let
#: go anyway (the scenario then fails on the counts, not on a timeout).
SLOT_OVERLAP_TIMEOUT = 600
#: SIGKILL scenario: every backend's job still runs when the triggerer is killed, which is right
#: after the last of them was first polled.
SIGKILL_JOB_SECONDS = 60
#: Moved-trigger scenario: the job runs through the handover (heartbeat threshold + reassignment).
MOVED_JOB_SECONDS = 40


def _trigger_owner(stack: AirflowStack, ti: Ti) -> int | None:
    """The triggerer job that runs the task instance's trigger (read from the stack's metadata DB)."""
    rows = db_rows(
        stack,
        "SELECT t.triggerer_id FROM trigger t JOIN task_instance ti ON ti.trigger_id = t.id "
        "WHERE ti.dag_id = ? AND ti.run_id = ? AND ti.task_id = ? AND t.triggerer_id IS NOT NULL",
        ti.dag_id, ti.run_id, ti.task_id,
    )
    return int(rows[0][0]) if rows else None


def _deferred_and_running(stack: AirflowStack, backend: Backend, ti: Ti) -> str:
    """Wait until the task is deferred, its job runs and a triggerer runs its trigger; return the job.

    Only a trigger that runs can cancel: Airflow deletes a trigger no triggerer has started yet
    without calling its ``on_kill`` (see docs/development.md), so the trigger's first poll is awaited.
    """
    stack.wait_for_task_state(ti.dag_id, ti.run_id, ti.task_id, "deferred", timeout=180, fail_on=("failed",))
    job = backend.wait_running(ti)
    stack.wait_for_trigger_to_run(ti.dag_id, ti.run_id, ti.task_id, f"Job {job} is ")
    return job


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_marking_a_deferred_task_failed_cancels_its_job(stack: AirflowStack, backend: Backend) -> None:
    ti = backend.start("markfailed", FOREVER)
    job = _deferred_and_running(stack, backend, ti)
    marked = time.monotonic()
    stack.mark_task_failed(ti.dag_id, ti.run_id, ti.task_id)
    backend.wait_cancelled(ti, job)
    print(f"\n{backend}: job {job} cancelled {time.monotonic() - marked:.1f}s after the PATCH")
    assert stack.wait_for_dag_run(ti.dag_id, ti.run_id, timeout=120) == "failed"
    assert stack.task_state(ti.dag_id, ti.run_id, ti.task_id) == "failed"


@pytest.mark.parametrize("backend", [b for b in ALL if b == "standalone"], indirect=True)
def test_deadline_cancels_the_job_while_deferred(stack: AirflowStack, backend: Backend) -> None:
    assert backend.deadline is not None
    dag_id, task_id = backend.deadline
    stack.wait_for_dag(dag_id)
    ti = Ti(dag_id, f"deadline_{int(time.time())}", task_id)
    stack.trigger_dag(dag_id, run_id=ti.run_id)
    assert stack.wait_for_dag_run(dag_id, ti.run_id, timeout=180) == "failed"
    backend.wait_cancelled(ti, backend.job_id(ti))
    assert "passed its deadline" in stack.task_log(dag_id, ti.run_id, task_id, try_number=1)


@pytest.mark.parametrize("backend", ["standalone"], indirect=True)
def test_a_trigger_moved_to_another_triggerer_does_not_cancel_the_job(stack: AirflowStack, backend: Backend) -> None:
    """The first triggerer is frozen until the trigger moves; woken up, it runs ``on_kill`` — and the
    guard leaves the job running, and the task still succeeds on it."""
    before = backend.snapshot()
    [job_a] = stack.wait_until(lambda: live_triggerers(stack), timeout=60, description="the triggerer's job")
    ti = backend.start("moved", MOVED_JOB_SECONDS)
    # The second triggerer starts while the task submits (its start-up is the slow part); the
    # trigger lands in either, and the one that holds it is frozen.
    stack.start_triggerer("triggerer-b")
    owner_name = "triggerer"
    try:
        stack.wait_for_task_state(ti.dag_id, ti.run_id, ti.task_id, "deferred", timeout=180, fail_on=("failed",))
        job = backend.job_id(ti)
        first = stack.wait_until(lambda: _trigger_owner(stack, ti), timeout=60, description="trigger assigned")
        owner_name = "triggerer" if first == job_a else "triggerer-b"
        stack.wait_until(lambda: len(live_triggerers(stack)) >= 2, timeout=120,
                         description="both triggerers heartbeating")
        stack.signal_component(owner_name, signal.SIGSTOP)  # heartbeat stops: the trigger moves away
        stack.wait_until(
            lambda: (owner := _trigger_owner(stack, ti)) is not None and owner != first,
            timeout=120, description="trigger moved to the other triggerer",
        )
        stack.signal_component(owner_name, signal.SIGCONT)  # it wakes up, sees the trigger gone: on_kill
        assert stack.wait_for_dag_run(ti.dag_id, ti.run_id, timeout=240) == "success", stack.dump_logs()
        assert backend.job_state(ti, job) == backend.succeeded_state
        assert len(backend.jobs_of(ti, before)) == 1, "one job, never resubmitted"
        log = stack.task_log(ti.dag_id, ti.run_id, ti.task_id, try_number=1)
        assert log.count(backend.submitted_line) == 1
        if TRIGGER_ON_KILL:  # Airflow's own line: on_kill ran in the first triggerer
            assert "invoking on_kill" in log, "on_kill must have run in the first triggerer"
        else:  # before 3.3 the first triggerer cancels the trigger's task and the core's guard decides;
            # Airflow 3.0 writes some lines logged during that cancel only to the triggerer's output
            left = f"owns job {job}; leaving it running"
            outputs = [path.read_text(errors="replace") for path in stack.component_logs(owner_name)]
            assert any(left in text for text in [log, *outputs]), "the cancelled trigger must leave its job running"
    finally:
        stack.signal_component(owner_name, signal.SIGCONT)
        stack.stop_component("triggerer-b")


def _parsed(stack: AirflowStack, servers: Servers, name: str) -> Backend:
    """The backend ``name`` of the shared stack, its job DAG parsed (what the ``backend`` fixture
    gives one scenario, for the fixtures that run every backend's scenario at once)."""
    backend = BACKENDS[name](stack, servers)
    stack.wait_for_dag(backend.dag_id, timeout=180)
    return backend


@dataclass
class FanOut:
    """One backend's part of the slot scenario: its jobs, the most seen at once, and when they were
    let go (see :meth:`Backend.release_fan_out`)."""

    backend: Backend
    before: object
    tis: list[Ti]
    most_deferred: int = 0
    most_running: int = 0
    makespan: float | None = None
    released: bool = False
    runs: list[tuple[str, str]] = field(default_factory=list)

    def seen_side_by_side(self) -> bool:
        return self.most_deferred > SLOTS and self.most_running > SLOTS


@pytest.fixture(scope="module")
def fan_outs(stack: AirflowStack, servers: Servers) -> dict[str, FanOut]:
    """:data:`SLOTS` + 1 jobs of every backend at once on :data:`SLOTS` worker slots, sampled every
    second until every run ended: how many of each backend's tasks were deferred, and how many of
    its jobs ran, at once. The jobs are held until they were seen side by side (or for
    :data:`SLOT_OVERLAP_TIMEOUT`), then let go: an event ends them, not a length that a loaded
    machine, where every backend's task runs queue on the one slot, could outlast."""
    chosen = {name: _parsed(stack, servers, name) for name in ALL}
    set_parallelism(stack, SLOTS)
    started = time.monotonic()
    outs = {}
    for name, backend in chosen.items():
        before = backend.snapshot()
        outs[name] = FanOut(backend, before, backend.start_fan_out("slots"))
        outs[name].runs = sorted({(ti.dag_id, ti.run_id) for ti in outs[name].tis})
    while waiting := [out for out in outs.values() if out.makespan is None]:
        for out in waiting:
            states = [t["state"] for run in out.runs for t in stack.task_instances(*run)]
            out.most_deferred = max(out.most_deferred, states.count("deferred"))
            out.most_running = max(out.most_running, out.backend.running_jobs(out.tis, out.before))
            if not out.released and (out.seen_side_by_side() or time.monotonic() - started > SLOT_OVERLAP_TIMEOUT):
                out.backend.release_fan_out(out.tis, out.before)
                out.released = True
            if all(stack.dag_run_state(*run) in ("success", "failed") for run in out.runs):
                out.makespan = time.monotonic() - started
        assert time.monotonic() - started < SLOT_OVERLAP_TIMEOUT + 300, \
            f"runs did not finish: {[out.backend for out in waiting]}"
        time.sleep(1)
    return outs


@pytest.mark.parametrize("name", ALL)
def test_worker_slots_are_free_while_jobs_run(stack: AirflowStack, fan_outs: dict[str, FanOut], name: str) -> None:
    """:data:`SLOTS` + 1 jobs of the backend (beside every other backend's) on :data:`SLOTS` worker
    slots. Holding a slot per job, at most SLOTS jobs could ever run at once; more deferred tasks and
    more running jobs than slots prove the slots were free while jobs ran — whatever the machine's
    load, unlike a bound on the makespan (printed)."""
    out = fan_outs[name]
    assert [stack.dag_run_state(*run) for run in out.runs] == ["success"] * len(out.runs), stack.dump_logs()
    out.backend.check_fan_out(out.tis, out.before)
    assert out.most_deferred > SLOTS, f"at most {out.most_deferred} tasks were deferred at once on {SLOTS} slot(s)"
    assert out.most_running > SLOTS, f"at most {out.most_running} jobs ran at once on {SLOTS} worker slot(s)"
    print(f"\n{name} slot release: {SLOTS + 1} held jobs on {SLOTS} worker slot(s), beside "
          f"the other backends', done after {out.makespan:.0f}s; up to {out.most_deferred} tasks deferred and "
          f"{out.most_running} jobs running at once")


PIPELINE_DAG = "emr_create_step_terminate"
DATABRICKS_EXAMPLES = ("databricks_notebook", "databricks_python", "databricks_jar")


@pytest.fixture(scope="module")
def example_runs(stack: AirflowStack, servers: Servers) -> dict[str, dict[str, str]]:
    """The example DAG runs, all triggered at once: their tasks wait in the triggerer on poll
    intervals of 10-30 s, so running them side by side costs the time of the slowest, not the sum.
    EMR: a pipeline whose step succeeds and one whose step fails; Databricks: each example once."""
    servers.aws.failing_args.add("broken-slices")
    tag = uuid.uuid4().hex[:8]
    runs = {PIPELINE_DAG: {"ok": f"pipeline_ok_{tag}", "failed": f"pipeline_failed_{tag}"},
            **{dag_id: {"example": f"example_{tag}"} for dag_id in DATABRICKS_EXAMPLES}}
    confs = {"ok": {"log_uri": "s3://asa-emr-logs/e2e/"},
             "failed": {"slices": "broken-slices", "log_uri": "s3://asa-emr-logs/e2e/"}, "example": {}}
    for dag_id, by_kind in runs.items():
        stack.wait_for_dag(dag_id)
        for kind, run_id in by_kind.items():
            stack.trigger_dag(dag_id, run_id=run_id, conf=confs[kind])
    return runs


def test_emr_create_wait_step_wait_terminate_leaves_no_cluster_running(
    stack: AirflowStack, servers: Servers, example_runs: dict[str, dict[str, str]]
) -> None:
    """The pipeline succeeds and leaves its cluster terminated; when the step fails, ``remove_cluster``
    (a teardown) still terminates it. Each run finds its own cluster in XCom."""
    aws, dag_id = servers.aws, PIPELINE_DAG
    ok, failed = example_runs[dag_id]["ok"], example_runs[dag_id]["failed"]

    def cluster_of(run_id: str) -> str:
        cluster_id = str(stack.xcom(dag_id, run_id, "create_cluster", "return_value")).strip('"')
        terminated = {b["JobFlowIds"][0] for b in aws.proxy.requests_of("TerminateJobFlows")}
        assert cluster_id in terminated, f"no TerminateJobFlows for {cluster_id} of {run_id}"
        return cluster_id

    assert stack.wait_for_dag_run(dag_id, ok, timeout=300) == "success", stack.dump_logs()
    cluster_id = cluster_of(ok)
    assert aws.emr.clusters[cluster_id].state == "TERMINATED"
    assert [s.state for s in aws.steps(cluster_id)] == ["COMPLETED"]

    assert stack.wait_for_dag_run(dag_id, failed, timeout=300) == "failed"
    assert stack.task_state(dag_id, failed, "wait_for_step") == "failed"
    assert stack.task_state(dag_id, failed, "remove_cluster") == "success", "the teardown still runs"
    assert aws.emr.clusters[cluster_of(failed)].state == "TERMINATED"
    log = stack.task_log(dag_id, failed, "wait_for_step")
    assert "FAILED" in log and "exited with code 1" in log, log[-3000:]


def test_the_databricks_example_dags_run_to_success(
    stack: AirflowStack, servers: Servers, example_runs: dict[str, dict[str, str]]
) -> None:
    runs = {dag_id: example_runs[dag_id]["example"] for dag_id in DATABRICKS_EXAMPLES}
    for dag_id, run_id in runs.items():
        if stack.wait_for_dag_run(dag_id, run_id, timeout=300) != "success":
            logs = [stack.task_log(dag_id, run_id, ti["task_id"], try_number=max(1, ti["try_number"]))
                    for ti in stack.task_instances(dag_id, run_id) if ti["state"] != "success"]
            raise AssertionError(f"{dag_id} did not succeed:\n" + "\n\n".join(logs)[-8000:])
    output = stack.xcom("databricks_notebook", runs["databricks_notebook"], "daily_summary", "notebook_output")
    exit_value = output if isinstance(output, dict) else json.loads(str(output))
    assert exit_value["run_date"].count("-") == 2, output  # the notebook's exit value: its parameters, echoed
    assert servers.databricks.rejected == [], "every request the examples sent matches databricks-sdk's models"


@dataclass(frozen=True)
class Killed:
    """One backend's part of the SIGKILL scenario, as it stood when the triggerer was killed."""

    backend: Backend
    before: object
    ti: Ti
    job: str
    state_after_kill: str | None


@pytest.fixture(scope="module")
def sigkilled(stack: AirflowStack, servers: Servers) -> tuple[dict[str, Killed], float]:
    """A job of every backend deferred and running in the triggerer (each first polled), then the
    triggerer SIGKILLed and a new one started; returns each backend's part and the restart time."""
    chosen = {name: _parsed(stack, servers, name) for name in ALL}
    set_parallelism(stack, len(ALL))  # the submits side by side: every job must outlive the last one's
    started = {name: (backend, backend.snapshot(), backend.start("sigkill", SIGKILL_JOB_SECONDS))
               for name, backend in chosen.items()}
    jobs = {name: _deferred_and_running(stack, backend, ti) for name, (backend, _, ti) in started.items()}
    assert stack.kill_triggerer(signal.SIGKILL)
    killed = {name: Killed(backend, before, ti, jobs[name], stack.task_state(ti.dag_id, ti.run_id, ti.task_id))
              for name, (backend, before, ti) in started.items()}
    restarted = time.monotonic()
    stack.start_triggerer()
    return killed, restarted


@pytest.mark.parametrize("name", ALL)
def test_triggerer_sigkill_then_restart_completes_with_exactly_one_job(
    stack: AirflowStack, sigkilled: tuple[dict[str, Killed], float], name: str
) -> None:
    killed, restarted = sigkilled
    backend, ti = killed[name].backend, killed[name].ti
    # Killed while it ran the trigger (its first poll was logged), not before it started it.
    assert killed[name].state_after_kill == "deferred"
    assert stack.wait_for_dag_run(ti.dag_id, ti.run_id, timeout=300) == "success", stack.dump_logs()
    jobs = backend.jobs_of(ti, killed[name].before)
    assert len(jobs) == 1, f"expected exactly one job ({killed[name].job}), got {jobs}"
    assert stack.task_instance(ti.dag_id, ti.run_id, ti.task_id)["try_number"] == 1, "resumed, not retried"
    backend.check_the_one_job(ti, jobs[0])
    print(f"\n{backend} triggerer SIGKILL: run succeeded {time.monotonic() - restarted:.1f}s after the restart")
