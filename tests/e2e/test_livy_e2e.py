"""The Livy operator in a real Airflow 3 (scheduler, dag-processor, triggerer, api-server, LocalExecutor),
running the example DAG ``livy_sum_of_squares`` through the Livy test server, which runs every batch as
a real PySpark application on the local Spark cluster.

* **slot release** — with one executor slot, two runs' Spark jobs run at the same time, because each
  task gives its slot back while deferred; both runs compute the checked answer;
* **triggerer SIGKILL** — a new triggerer picks the deferred task up, and the run ends with exactly
  one Livy batch for it (no resubmission), in its first try;
* **mark failed** — marking the deferred task failed makes the trigger's ``on_kill`` delete the batch
  (``DELETE /batches/{id}``), which kills the Spark application.

Every job holds for >= 20 s and polls every 5 s: Airflow 3.3.2 fails deferrals that end within ~5 s
(scheduler race apache/airflow#66374).
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_spark_async.core.keys import find_key, key_family
from tests.servers.livy_server import LivyServer

try:
    from tests.e2e.airflow_stack import AirflowStack, AirflowStackError
except ImportError:  # tests/e2e imported as a rootdir-less folder
    from airflow_stack import AirflowStack, AirflowStackError  # type: ignore[no-redef]

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "livy_sum_of_squares"
TASK_ID = "sum_of_squares"
N = 200_000


@pytest.fixture(scope="module")
def livy(spark_cluster: Any) -> Iterator[LivyServer]:
    with LivyServer(spark_master=spark_cluster.master_url) as server:
        yield server


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e-livy")
    (root / "dags").mkdir()
    (root / "output").mkdir()
    shutil.copy(ROOT / "example_dags" / f"{DAG_ID}.py", root / "dags")
    shutil.copytree(ROOT / "example_dags" / "spark_apps", root / "dags" / "spark_apps")
    return root


@pytest.fixture(scope="module")
def stack(workdir: Path, livy: LivyServer) -> Iterator[AirflowStack]:
    extra_env = {
        "AIRFLOW_CONN_LIVY_DEFAULT": json.dumps({"conn_type": "livy", "host": "127.0.0.1", "port": livy.port}),
        "SPARK_ASYNC_OUTPUT_DIR": str(workdir / "output"),
    }
    airflow = AirflowStack(workdir / "dags", parallelism=1, base_tmp_dir=workdir / "stack", extra_env=extra_env,
                           dags_paused=False)
    with airflow:
        airflow.wait_for_dag(DAG_ID)
        yield airflow
    assert airflow.all_pids() == [], "processes left behind"


_FAMILIES: dict[str, str] = {}


def family_of(stack: AirflowStack, livy: LivyServer, run_id: str) -> str | None:
    """The key family of this run's task instance, read from the batch its ``job_id`` XCom names;
    ``None`` while the task has not submitted yet.

    (The family hashes the DAG run *instance* and the deployment salt, which a test cannot recompute
    from the run id; every try and clear generation of the task instance shares it.)
    """
    if run_id not in _FAMILIES:
        try:
            job_id = str(stack.xcom(DAG_ID, run_id, TASK_ID, "job_id"))
        except AirflowStackError:  # 404: no XCom yet
            return None
        key = find_key(next((b["name"] for b in livy.batches() if str(b["id"]) == job_id), None))
        if key is None:
            return None
        _FAMILIES[run_id] = key_family(key)
    return _FAMILIES[run_id]


def batches_of(stack: AirflowStack, livy: LivyServer, run_id: str) -> list[dict[str, Any]]:
    """Every batch Livy holds for this run's task, found by the key family in its name."""
    family = family_of(stack, livy, run_id)
    return [b for b in livy.batches() if family and key_family(find_key(b["name"]) or "") == family]


def posts_of(stack: AirflowStack, livy: LivyServer, run_id: str) -> int:
    family = family_of(stack, livy, run_id)
    assert family is not None, f"no batch recorded for {run_id}"
    return sum(1 for body in livy.posts if key_family(find_key(body.get("name")) or "") == family)


def wait_batch(stack: AirflowStack, livy: LivyServer, run_id: str, state: str, timeout: float = 120) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((b for b in batches_of(stack, livy, run_id) if b["state"] == state), None)

    return stack.wait_until(found, timeout=timeout, description=f"a {state} Livy batch of {run_id}")


def test_deferred_livy_tasks_release_the_only_slot_and_compute_the_answer(
    stack: AirflowStack, livy: LivyServer, workdir: Path
) -> None:
    runs = ["slots-1", "slots-2"]
    started = time.monotonic()
    for run_id in runs:
        # 45 s: under load the second run's task may take a while to submit; the overlap must not end first.
        stack.trigger_dag(DAG_ID, run_id=run_id, conf={"n": N, "hold_seconds": 45})

    def both_running() -> bool:
        running = [r for r in runs if any(b["state"] == "running" for b in batches_of(stack, livy, r))]
        deferred = [r for r in runs if stack.task_state(DAG_ID, r, TASK_ID) == "deferred"]
        return len(running) == 2 and len(deferred) >= 1

    stack.wait_until(both_running, timeout=180, description="two Spark jobs running with one executor slot")
    overlap_after = time.monotonic() - started
    for run_id in runs:
        assert stack.wait_for_dag_run(DAG_ID, run_id, timeout=300) == "success"
        assert posts_of(stack, livy, run_id) == 1
        [batch] = batches_of(stack, livy, run_id)
        assert batch["state"] == "success" and batch["appId"], batch
        output = json.loads((workdir / "output" / f"livy-{run_id}.json").read_text())
        assert output["sum_of_squares"] == N * (N + 1) * (2 * N + 1) // 6
    log = stack.task_log(DAG_ID, runs[0], TASK_ID, 1)
    assert "Submitted livy job" in log and "succeeded" in log
    assert "wrote " in log, "the end of the batch log (the application's own output) is in the task log"
    print(f"\nslot release: both jobs running {overlap_after:.1f}s after triggering; "
          f"both runs done {time.monotonic() - started:.1f}s after triggering")


def test_a_sigkilled_triggerer_is_replaced_and_the_run_has_exactly_one_batch(
    stack: AirflowStack, livy: LivyServer
) -> None:
    run_id = "tkill-1"
    stack.trigger_dag(DAG_ID, run_id=run_id, conf={"n": N, "hold_seconds": 30})
    stack.wait_for_task_state(DAG_ID, run_id, TASK_ID, "deferred", timeout=120, fail_on=("failed",))
    wait_batch(stack, livy, run_id, "running")

    killed = stack.kill_triggerer(signal.SIGKILL)
    assert killed
    assert stack.task_state(DAG_ID, run_id, TASK_ID) == "deferred"
    restarted = time.monotonic()
    stack.start_triggerer()

    assert stack.wait_for_dag_run(DAG_ID, run_id, timeout=300) == "success"
    ti = stack.task_instance(DAG_ID, run_id, TASK_ID)
    assert ti["try_number"] == 1, "resumed by the new triggerer, not retried"
    assert posts_of(stack, livy, run_id) == 1 and len(batches_of(stack, livy, run_id)) == 1
    print(f"\ntriggerer SIGKILL: run succeeded {time.monotonic() - restarted:.1f}s after the restart")


def test_marking_the_deferred_task_failed_deletes_its_batch(stack: AirflowStack, livy: LivyServer) -> None:
    run_id = "markfail-1"
    stack.trigger_dag(DAG_ID, run_id=run_id, conf={"n": N, "hold_seconds": 600})
    stack.wait_for_task_state(DAG_ID, run_id, TASK_ID, "deferred", timeout=120, fail_on=("failed",))
    batch = wait_batch(stack, livy, run_id, "running")
    stack.wait_for_trigger_to_run(DAG_ID, run_id, TASK_ID, f"Job {batch['id']} is ")

    marked = time.monotonic()
    stack.mark_task_failed(DAG_ID, run_id, TASK_ID)
    stack.wait_until(lambda: livy.batch_state(batch["id"]) == "deleted", timeout=60,
                     description=f"DELETE /batches/{batch['id']}")
    deleted_after = time.monotonic() - marked
    assert livy.deleted[batch["id"]] == "killed", "the Spark application was killed, not left running"
    assert livy.count("DELETE", rf"^/batches/{batch['id']}$") == 1
    assert stack.wait_for_dag_run(DAG_ID, run_id, timeout=60) == "failed"
    assert stack.task_state(DAG_ID, run_id, TASK_ID) == "failed"
    print(f"\nmark failed: batch deleted {deleted_after:.1f}s after the PATCH")
