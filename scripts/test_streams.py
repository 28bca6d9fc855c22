"""The whole test suite as two streams of pytest runs side by side: what ``./dev test`` runs.

Why two: the e2e suite spends most of its time waiting — on Spark jobs, on Airflow's scheduler
loop, on a triggerer restart — while the rest of the suite keeps about one core busy. Run one
after the other they took 31 minutes on a 2-core machine (34 in CI); side by side, about as long
as the longer of the two. Each pytest run starts and stops its own servers on free ports (its own
Spark cluster, moto, test servers, PostgreSQL, Airflow stack), so they share nothing but the machine.

Each stream is a list of runs one after the other: the full suite on the newest supported Airflow
(this interpreter's venv, ``constraints.txt``) and the core + e2e subset on the oldest
(``OLDEST_AIRFLOW_PYTHON``, made by ``./dev test`` from ``constraints/airflow-3.0.txt``).

Each output line is printed as it completes, prefixed with its stream's name; a summary at the
end gives each run's Airflow version, exit status and wall time. The exit status is 0 only if
every run passed. Ctrl-C or SIGTERM is passed on as SIGINT, which lets pytest run its fixtures'
teardown (and stop the servers) before it exits; no further run starts.

``python scripts/test_streams.py [PYTEST_ARGS...]`` adds the arguments to every run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
COMMON = ["-p", "no:cacheprovider", "--color=no", "--durations=30"]
#: the venv of the newest supported Airflow (constraints.txt) runs the full suite ...
NEWEST = Path(sys.executable)
#: ... and the venv of the oldest (constraints/airflow-3.0.txt, made by ``./dev test``) the core + e2e
#: subset: what differs between minors is the Airflow runtime around the package (imports, the
#: triggerer's cancel path, the task SDK), which the core and the real-Airflow e2e tests exercise
OLDEST = Path(os.environ.get("OLDEST_AIRFLOW_PYTHON", ".venv-airflow-3.0/bin/python"))
OLDEST = OLDEST if OLDEST.is_absolute() else ROOT / OLDEST  # not resolve(): that leaves the venv
#: on the oldest, the e2e scenarios whose outcome depends on the Airflow runtime: user actions and the
#: cancel path (which differs before 3.3), deadlines, triggerer kills, freezes and moves; not the
#: slot and example-DAG scenarios, which exercise the backends (the same code on every minor)
OLDEST_E2E = ["tests/e2e", "-k", "not worker_slots and not example_dags and not leaves_no_cluster"]
OLDEST_CORE = ["tests/core", "tests/test_package.py", "tests/test_job_path.py"]
#: each stream runs its steps one after the other; together they cover the suite exactly once on
#: the newest Airflow and the subset once on the oldest. Balanced by measurement on 2 cores: the e2e
#: runs wait on Spark, the scheduler and triggerer restarts, the rest keeps about one core busy.
STREAMS: dict[str, list[tuple[Path, list[str]]]] = {
    "e2e": [(NEWEST, ["tests/e2e"]), (OLDEST, OLDEST_E2E)],
    "rest": [(NEWEST, ["tests", "--ignore=tests/e2e"]), (OLDEST, OLDEST_CORE)],
}


def pump(name: str, stream: subprocess.Popen[bytes], lock: threading.Lock) -> None:
    """Print the stream's output line by line, prefixed with its name."""
    assert stream.stdout is not None
    width = max(map(len, STREAMS))
    for raw in iter(stream.stdout.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        with lock:
            print(f"[{name:<{width}}] {line}", flush=True)


def airflow_version(python: Path) -> str:
    found = subprocess.run([str(python), "-c", "import airflow; print(airflow.__version__)"],
                           capture_output=True, text=True, timeout=120)
    if found.returncode != 0:
        raise SystemExit(f"{python} cannot import Airflow (run ./dev test, which makes it):\n{found.stderr}")
    return found.stdout.strip()


def main(extra: list[str]) -> int:
    lock = threading.Lock()
    started = time.monotonic()
    stopping = threading.Event()
    current: dict[str, subprocess.Popen[bytes]] = {}
    results: list[tuple[str, int, float]] = []
    versions = {python: airflow_version(python) for steps in STREAMS.values() for python, _ in steps}

    def run_stream(name: str, steps: list[tuple[Path, list[str]]]) -> None:
        for python, args in steps:
            if stopping.is_set():
                return
            label = f"{name} (Airflow {versions[python]})"
            began = time.monotonic()
            child = subprocess.Popen(
                [str(python), "-m", "pytest", *COMMON, *args, *extra], cwd=ROOT,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            current[name] = child
            pump(name, child, lock)
            code = child.wait()
            with lock:
                results.append((label, code, time.monotonic() - began))

    def forward(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        for child in current.values():
            if child.poll() is None:
                child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    threads = [threading.Thread(target=run_stream, args=item, daemon=True) for item in STREAMS.items()]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(timeout=0.5)
    for label, code, seconds in results:
        print(f"==> {label}: {'passed' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s")
    print(f"==> whole suite: {time.monotonic() - started:.0f} s")
    if stopping.is_set() and len(results) < sum(map(len, STREAMS.values())):
        return 130
    return next((code for _, code, _ in results if code != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
