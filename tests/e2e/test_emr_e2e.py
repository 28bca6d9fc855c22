"""The EMR operators in a real Airflow 3 (scheduler, dag-processor, triggerer, api-server,
LocalExecutor, SQLite) against moto's server, driven like EMR (tests/emr/moto_aws.py), running the
example DAGs:

* **mark failed** — marking the deferred task failed makes the trigger's ``on_kill`` send
  ``CancelSteps`` with ``SEND_INTERRUPT``, and the step ends ``CANCELLED``;
* **slot release** — with one executor slot, three runs' steps run at the same time, because each
  task gives its slot back while deferred;
* **triggerer SIGKILL** — a new triggerer picks the deferred task up; the run succeeds in its first
  try with exactly one step added for it (no resubmission);
* **create → wait → step → wait → terminate** — the pipeline succeeds and leaves the cluster
  terminated; when the step fails, ``remove_cluster`` (``all_done``) still terminates it.

Steps run >= 25 s and tasks poll every >= 5 s: Airflow 3.3.2 can lose deferrals shorter than ~5 s
(apache/airflow#66374). The mark-failed test runs first, on a quiet triggerer: the trigger's
``on_kill`` asks Airflow for the task's state, and Airflow gives ``on_kill`` 20 s in all — once,
right after three triggers had fired, the triggerer's supervisor stalled for 23 s and the lookup
did not return in time. The SIGKILL test runs last (see docs/development.md).
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_spark_async.core.keys import key_family
from airflow_spark_async.emr.ids import StepsRef, parse_tag
from tests.emr.moto_aws import MotoAws

try:
    from tests.e2e.airflow_stack import AirflowStack
except ImportError:  # tests/e2e imported as a rootdir-less folder
    from airflow_stack import AirflowStack  # type: ignore[no-redef]

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
STEP_SECONDS = 25.0
STEP_DAG, STEP_TASK = "emr_spark_step", "spark_pi"
PIPELINE_DAG = "emr_create_step_terminate"


@pytest.fixture(scope="module")
def aws() -> Iterator[MotoAws]:
    with MotoAws(default_seconds=STEP_SECONDS) as service:
        yield service


@pytest.fixture(scope="module")
def stack(aws: MotoAws, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    root = tmp_path_factory.mktemp("e2e-emr")
    dags = root / "dags"
    dags.mkdir()
    for example in (f"{STEP_DAG}.py", f"{PIPELINE_DAG}.py"):
        shutil.copy(ROOT / "example_dags" / example, dags)
    env = {"AIRFLOW_CONN_AWS_DEFAULT": aws.conn_json()}
    airflow = AirflowStack(dags, parallelism=1, base_tmp_dir=root / "stack", extra_env=env, dags_paused=False)
    with airflow:
        airflow.wait_for_dag(STEP_DAG)
        airflow.wait_for_dag(PIPELINE_DAG)
        yield airflow
    assert airflow.all_pids() == [], "processes left behind"


def _steps_of(stack: AirflowStack, aws: MotoAws, cluster_id: str, dag_id: str, task_id: str,
              run_id: str) -> list[object]:
    """Every step of the cluster that carries a key of this task instance (any clear generation).

    The key's family hashes the DAG run *instance* and the deployment salt, which a test cannot
    recompute from the run id: it is read from the step the task recorded in its ``job_id`` XCom.
    """
    ref = StepsRef.parse(str(stack.xcom(dag_id, run_id, task_id, "job_id")).strip('"'))
    steps = aws.steps(cluster_id)
    [recorded] = [s for s in steps if s.id == ref.step_ids[0]]  # type: ignore[attr-defined]
    tag = parse_tag(recorded.name)  # type: ignore[attr-defined]
    assert tag is not None, f"step {recorded.name!r} carries no key"  # type: ignore[attr-defined]
    family = key_family(tag.key)
    return [s for s in steps if (t := parse_tag(s.name)) and key_family(t.key) == family]  # type: ignore[attr-defined]


def test_marking_a_deferred_task_failed_cancels_its_step(stack: AirflowStack, aws: MotoAws) -> None:
    cluster_id = aws.create_cluster("e2e-markfailed")
    aws.cluster_seconds[cluster_id] = 600
    run_id = f"markfailed_{int(time.time())}"
    stack.trigger_dag(STEP_DAG, run_id=run_id, conf={"cluster_id": cluster_id})
    stack.wait_for_task_state(STEP_DAG, run_id, STEP_TASK, "deferred", timeout=120, fail_on=("failed",))
    [step] = _steps_of(stack, aws, cluster_id, STEP_DAG, STEP_TASK, run_id)
    stack.wait_until(lambda: step.state == "RUNNING", timeout=30, description="the step to run")  # type: ignore[attr-defined]
    # Only a trigger that runs can cancel: Airflow deletes a trigger no triggerer has started yet
    # without calling its on_kill (see docs/emr.md). So wait for the trigger's first poll.
    stack.wait_until(
        lambda: any(step.id in body.get("StepIds", ()) for body in aws.proxy.requests_of("ListSteps")),  # type: ignore[attr-defined]
        timeout=60, description="the trigger's first poll",
    )
    stack.mark_task_failed(STEP_DAG, run_id, STEP_TASK)
    stack.wait_until(lambda: step.state == "CANCELLED", timeout=90,  # type: ignore[attr-defined]
                     description="the step to be cancelled after mark-failed")
    [request] = [r for r in aws.cancel_requests if r["ClusterId"] == cluster_id]
    assert request["StepIds"] == [step.id] and request["StepCancellationOption"] == "SEND_INTERRUPT"  # type: ignore[attr-defined]


def test_a_worker_slot_is_free_while_steps_run(stack: AirflowStack, aws: MotoAws) -> None:
    cluster_id = aws.create_cluster("e2e-slots")
    runs = [f"slots_{i}_{int(time.time())}" for i in range(3)]
    started = time.monotonic()
    for run_id in runs:
        stack.trigger_dag(STEP_DAG, run_id=run_id, conf={"cluster_id": cluster_id})
    most_deferred = 0
    while any(stack.dag_run_state(STEP_DAG, r) not in ("success", "failed") for r in runs):
        states = [stack.task_state(STEP_DAG, r, STEP_TASK) for r in runs]
        most_deferred = max(most_deferred, states.count("deferred"))
        assert time.monotonic() - started < 600, f"runs did not finish: {states}"
        time.sleep(1)
    makespan = time.monotonic() - started
    assert [stack.dag_run_state(STEP_DAG, r) for r in runs] == ["success"] * 3, stack.dump_logs()
    assert most_deferred >= 2, f"one slot, yet only {most_deferred} task(s) were deferred at once"
    # The makespan is printed, not bounded: under load it measures the machine; two tasks deferred at
    # once on one worker slot prove the slot was free while a step ran, whatever the load.
    assert all(len(_steps_of(stack, aws, cluster_id, STEP_DAG, STEP_TASK, r)) == 1 for r in runs)
    print(f"\nE2E EMR slot release: 3 x {STEP_SECONDS:.0f}s steps on 1 worker slot in {makespan:.0f}s; "
          f"up to {most_deferred} tasks deferred at once")


def test_create_wait_step_wait_terminate_leaves_no_cluster_running(stack: AirflowStack, aws: MotoAws) -> None:
    aws.proxy.clear()
    ok = f"pipeline_ok_{int(time.time())}"
    stack.trigger_dag(PIPELINE_DAG, run_id=ok, conf={"log_uri": "s3://asa-emr-logs/e2e/"})
    assert stack.wait_for_dag_run(PIPELINE_DAG, ok, timeout=300) == "success", stack.dump_logs()
    [cluster_id] = {b["JobFlowIds"][0] for b in aws.proxy.requests_of("TerminateJobFlows")}
    assert aws.emr.clusters[cluster_id].state == "TERMINATED"
    assert [s.state for s in aws.steps(cluster_id)] == ["COMPLETED"]

    aws.proxy.clear()
    aws.failing_args.add("broken-slices")
    failed = f"pipeline_failed_{int(time.time())}"
    stack.trigger_dag(PIPELINE_DAG, run_id=failed, conf={"slices": "broken-slices",
                                                         "log_uri": "s3://asa-emr-logs/e2e/"})
    assert stack.wait_for_dag_run(PIPELINE_DAG, failed, timeout=300) == "failed"
    assert stack.task_state(PIPELINE_DAG, failed, "wait_for_step") == "failed"
    assert stack.task_state(PIPELINE_DAG, failed, "remove_cluster") == "success", "the teardown still runs"
    [cluster_id] = {b["JobFlowIds"][0] for b in aws.proxy.requests_of("TerminateJobFlows")}
    assert aws.emr.clusters[cluster_id].state == "TERMINATED"
    log = stack.task_log(PIPELINE_DAG, failed, "wait_for_step")
    assert "FAILED" in log and "exited with code 1" in log, log[-3000:]


def test_triggerer_sigkill_then_restart_completes_with_one_step(stack: AirflowStack, aws: MotoAws) -> None:
    cluster_id = aws.create_cluster("e2e-sigkill")
    aws.cluster_seconds[cluster_id] = 40
    run_id = f"sigkill_{int(time.time())}"
    stack.trigger_dag(STEP_DAG, run_id=run_id, conf={"cluster_id": cluster_id})
    stack.wait_for_task_state(STEP_DAG, run_id, STEP_TASK, "deferred", timeout=120, fail_on=("failed",))
    # Kill the triggerer while it runs the trigger (its first poll is logged), not before it started it.
    job_id = str(stack.xcom(STEP_DAG, run_id, STEP_TASK, "job_id")).strip('"')
    stack.wait_for_trigger_to_run(STEP_DAG, run_id, STEP_TASK, f"Job {job_id} is ")
    stack.kill_triggerer(signal.SIGKILL)
    stack.start_triggerer()
    assert stack.wait_for_dag_run(STEP_DAG, run_id, timeout=300) == "success", stack.dump_logs()
    steps = _steps_of(stack, aws, cluster_id, STEP_DAG, STEP_TASK, run_id)
    assert len(steps) == 1 and steps[0].state == "COMPLETED", "exactly one step, and it is the one that ran"  # type: ignore[attr-defined]
    ti = stack.task_instance(STEP_DAG, run_id, STEP_TASK)
    assert ti["try_number"] == 1
    job_id = stack.api("GET", f"/api/v2/dags/{STEP_DAG}/dagRuns/{stack._q(run_id)}/taskInstances/{STEP_TASK}"
                              "/xcomEntries/job_id")["value"]
    assert StepsRef.parse(str(job_id).strip('"')).step_ids == (steps[0].id,)  # type: ignore[attr-defined]
