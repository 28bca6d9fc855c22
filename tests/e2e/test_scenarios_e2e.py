"""The exactly-once contract (docs/concepts.md, I1-I4) in a real Airflow 3 — scheduler,
dag-processor, triggerer, api-server, LocalExecutor, SQLite — written once and run against every
backend (tests/e2e/backends.py says how each service is driven):

* **mark failed** — marking a deferred task failed makes its trigger's ``on_kill`` cancel the job (I3);
* **deadline** — a job that outlives ``job_timeout`` is cancelled while the task is deferred (I3, I4);
* **a moved trigger** — Airflow calls ``on_kill`` also when a trigger merely moves to another
  triggerer; the guard sees the task still deferred and leaves the job running (I2, I3);
* **slot release** — with :data:`SLOTS` worker slots, more jobs than slots run at once (deferral);
* **triggerer SIGKILL** — a new triggerer picks the deferred task up; the run succeeds in its first
  try with exactly one job (I1, I4);
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

import pytest

from tests.e2e.airflow_stack import AirflowStack
from tests.e2e.backends import SLOTS, Backend, Servers, Ti, db_rows, live_triggerers, set_parallelism

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

ALL = ["standalone", "livy", "emr", "databricks"]
#: A job that must outlive the scenario (it ends cancelled): ten minutes, far beyond any wait.
FOREVER = 600
#: Slot scenario: how long each job runs. Long enough that the next job is submitted — one task
#: run on the only slot, seconds on a loaded machine — while the first one still runs.
SLOT_JOB_SECONDS = 20
#: SIGKILL scenario: the job still runs when the triggerer is killed right after its first poll.
SIGKILL_JOB_SECONDS = 20
#: Moved-trigger scenario: the job runs through the handover (heartbeat threshold + reassignment).
MOVED_JOB_SECONDS = 40


def _trigger_owner(stack: AirflowStack, ti: Ti) -> int | None:
    """The triggerer job that runs the task instance's trigger (read from the stack's SQLite file)."""
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
        # Airflow's own line: on_kill ran in the first triggerer — and the guard left the job running.
        assert "invoking on_kill" in log, "on_kill must have run in the first triggerer"
    finally:
        stack.signal_component(owner_name, signal.SIGCONT)
        stack.stop_component("triggerer-b")


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_worker_slots_are_free_while_jobs_run(stack: AirflowStack, backend: Backend) -> None:
    """:data:`SLOTS` + 1 jobs on :data:`SLOTS` worker slots. Holding a slot per job, at most SLOTS jobs
    could ever run at once; more deferred tasks and more running jobs than slots prove the slots were
    free while jobs ran — whatever the machine's load, unlike a bound on the makespan (printed)."""
    set_parallelism(stack, SLOTS)
    before = backend.snapshot()
    started = time.monotonic()
    tis = backend.start_fan_out("slots", SLOT_JOB_SECONDS)
    runs = sorted({(ti.dag_id, ti.run_id) for ti in tis})
    most_deferred = most_running = 0
    while any(stack.dag_run_state(*run) not in ("success", "failed") for run in runs):
        states = [t["state"] for run in runs for t in stack.task_instances(*run)]
        most_deferred = max(most_deferred, states.count("deferred"))
        most_running = max(most_running, backend.running_jobs(tis, before))
        assert time.monotonic() - started < 600, f"runs did not finish: {states}"
        time.sleep(1)
    makespan = time.monotonic() - started
    assert [stack.dag_run_state(*run) for run in runs] == ["success"] * len(runs), stack.dump_logs()
    backend.check_fan_out(tis, before)
    assert most_deferred > SLOTS, f"at most {most_deferred} tasks were deferred at once on {SLOTS} slot(s)"
    assert most_running > SLOTS, f"at most {most_running} jobs ran at once on {SLOTS} worker slot(s)"
    print(f"\n{backend} slot release: {len(tis)} x {SLOT_JOB_SECONDS}s jobs on {SLOTS} worker slot(s) in "
          f"{makespan:.0f}s; up to {most_deferred} tasks deferred and {most_running} jobs running at once")


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


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_triggerer_sigkill_then_restart_completes_with_exactly_one_job(stack: AirflowStack, backend: Backend) -> None:
    before = backend.snapshot()
    ti = backend.start("sigkill", SIGKILL_JOB_SECONDS)
    # Kill the triggerer while it runs the trigger (its first poll is logged), not before it started it.
    job = _deferred_and_running(stack, backend, ti)
    assert stack.kill_triggerer(signal.SIGKILL)
    assert stack.task_state(ti.dag_id, ti.run_id, ti.task_id) == "deferred"
    restarted = time.monotonic()
    stack.start_triggerer()
    assert stack.wait_for_dag_run(ti.dag_id, ti.run_id, timeout=300) == "success", stack.dump_logs()
    jobs = backend.jobs_of(ti, before)
    assert len(jobs) == 1, f"expected exactly one job ({job}), got {jobs}"
    assert stack.task_instance(ti.dag_id, ti.run_id, ti.task_id)["try_number"] == 1, "resumed, not retried"
    backend.check_the_one_job(ti, jobs[0])
    print(f"\n{backend} triggerer SIGKILL: run succeeded {time.monotonic() - restarted:.1f}s after the restart")
