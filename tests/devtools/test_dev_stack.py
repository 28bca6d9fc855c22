"""``./dev stack`` end to end: up, status, the Livy, EMR-steps and SparkSubmitOperator examples through Airflow's REST
API, down -- and nothing of the stack left running.

Why a test of its own: the stack is the way a person tries a DAG locally; it must keep coming up
on a clean machine with every emulator wired to the cluster and to Airflow, and ``down`` must not
leave a JVM or an Airflow process behind. It runs the CLI as a user does (``python -m
airflow_spark_async_devtools.stack``, what ``./dev stack`` execs), on free ports and a state folder
of its own, so it can run beside a developer's stack and beside the e2e suite. Both DAG runs are
real Spark jobs: Livy's batch and the EMR step (SparkPi, run as pyspark's pi.py) are spark-submits
on the stack's cluster; their inputs are small so that they take seconds, not minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from airflow_spark_async_devtools.stack.config import StackConfig
from airflow_spark_async_devtools.stack.procs import stack_processes

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]


def _cli(state: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "airflow_spark_async_devtools.stack", "--state-dir", str(state),
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def test_stack_up_runs_examples_of_three_backends_and_down_leaves_nothing_running(tmp_path: Path) -> None:
    state = tmp_path / "stack"
    began = time.monotonic()
    up = _cli(state, "up", "--free-ports", "--parallelism", "2", "--job-seconds", "5", timeout=600)
    up_seconds = time.monotonic() - began
    pids: list[int] = []
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Airflow UI and REST API  http://127.0.0.1:" in up.stdout
        status = _cli(state, "status", "--json", timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        components = json.loads(status.stdout)["components"]
        assert {name for name, c in components.items() if c["up"]} == {"spark", "livy", "databricks", "aws",
                                                                       "airflow"}
        assert set(components["airflow"]["components"]) == {"api-server", "scheduler", "dag-processor", "triggerer"}
        pids = [p for c in components.values() for p in (c["pid"] if isinstance(c["pid"], list) else [c["pid"]])]
        pids += [part["pid"] for part in components["airflow"]["components"].values()]

        runs = {
            "livy_sum_of_squares": {"n": 1000},
            "emr_spark_step": {"slices": 2},  # the example's default cluster id exists on the emulator
            "spark_standalone_migrated_from_spark_submit": {"n": 1000},  # the spark_default connection
        }
        procs = {dag_id: subprocess.Popen(
            [sys.executable, "-m", "airflow_spark_async_devtools.stack", "--state-dir", str(state), "run", dag_id,
             "--conf", json.dumps(conf), "--timeout", "400"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for dag_id, conf in runs.items()}
        outputs = {dag_id: proc.communicate(timeout=450)[0] for dag_id, proc in procs.items()}
        for dag_id, proc in procs.items():
            assert proc.returncode == 0, f"{dag_id}:\n{outputs[dag_id]}\n{_logs(state)}"
            assert f"==> {dag_id}: success" in outputs[dag_id]
        [step_log] = list((state / "jobs").glob("*/stdout"))
        assert "Pi is roughly" in step_log.read_text(), "the EMR step ran on the cluster, not on a clock"
        print(f"\nstack up {up_seconds:.0f}s; " + "; ".join(o.strip().splitlines()[-1] for o in outputs.values()))
    finally:
        cfg = StackConfig.load(state)
        down = _cli(state, "down", timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "nothing of the stack is left running" in down.stdout
    assert cfg is not None and stack_processes(cfg.stack_id) == []
    assert [p for p in pids if p and psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE] == []
    assert _cli(state, "status", timeout=60).returncode == 1, "status says down"


def _logs(state: Path) -> str:
    return "\n".join(f"--- {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                     for log in sorted((state / "logs").glob("*.log")))
