"""The whole test suite as two pytest processes side by side: what ``./dev test`` runs.

Why two: the e2e suite spends most of its time waiting — on Spark jobs, on Airflow's scheduler
loop, on a triggerer restart — while the rest of the suite keeps about one core busy. Run one
after the other they took 31 minutes on a 2-core machine (34 in CI); side by side, about as long
as the longer of the two: 16 minutes (e2e 755 s, the rest 952 s, measured on 2 cores). Each
stream is an ordinary pytest run that starts and stops its own servers on free ports (its own
Spark cluster, moto, test servers, Airflow stack), so the two share nothing but the machine.

Each output line is printed as it completes, prefixed with its stream's name; a summary at the
end gives each stream's exit status and wall time. The exit status is 0 only if both passed.
Ctrl-C or SIGTERM is passed on to both as SIGINT, which lets pytest run its fixtures' teardown
(and stop the servers) before it exits.

``python scripts/test_streams.py [PYTEST_ARGS...]`` adds the arguments to both streams.
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
#: each stream's own arguments; together they cover the suite exactly once
#: (the sensor conformance suite rides with e2e, to balance them: measured side by side on 2 cores,
#: e2e with it took 755 s and the rest 952 s)
SENSOR_CONFORMANCE = "tests/conformance/test_sensor_conformance.py"
STREAMS: dict[str, list[str]] = {
    "e2e": ["tests/e2e", SENSOR_CONFORMANCE],
    "rest": ["tests", "--ignore=tests/e2e", f"--ignore={SENSOR_CONFORMANCE}"],
}


def pump(name: str, stream: subprocess.Popen[bytes], lock: threading.Lock) -> None:
    """Print the stream's output line by line, prefixed with its name."""
    assert stream.stdout is not None
    width = max(map(len, STREAMS))
    for raw in iter(stream.stdout.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        with lock:
            print(f"[{name:<{width}}] {line}", flush=True)


def main(extra: list[str]) -> int:
    lock = threading.Lock()
    started = time.monotonic()
    children: dict[str, subprocess.Popen[bytes]] = {}
    for name, args in STREAMS.items():
        children[name] = subprocess.Popen(
            [sys.executable, "-m", "pytest", *COMMON, *args, *extra], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    pumps = [threading.Thread(target=pump, args=(name, child, lock), daemon=True) for name, child in children.items()]
    for thread in pumps:
        thread.start()
    ended: dict[str, tuple[int, float]] = {}
    while len(ended) < len(children):
        for name, child in children.items():
            if name not in ended and child.poll() is not None:
                ended[name] = (child.returncode, time.monotonic() - started)
        time.sleep(0.5)
    for thread in pumps:
        thread.join(timeout=10)
    for name, (code, seconds) in ended.items():
        print(f"==> stream {name}: {'passed' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s")
    print(f"==> whole suite: {time.monotonic() - started:.0f} s")
    return next((code for code, _ in ended.values() if code != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
