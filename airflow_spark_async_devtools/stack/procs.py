"""Starting the stack's processes detached from the terminal, and finding every one of them again.

Why a marker: ``./dev stack up`` returns while its processes go on (each in a session of its own,
so closing the terminal or Ctrl-C does not reach them), and ``down`` runs later from another
process. Pid files find the processes ``up`` started, but not what *they* started: Airflow's task
processes, Livy's ``spark-submit`` drivers, Spark's executors. So every process of a stack carries
``AIRFLOW_SPARK_ASYNC_STACK_ID=<id>`` in its environment (children inherit it), ``down`` sweeps every
process of this user that carries it, and a stale pid file can never make ``down`` signal a stranger.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from airflow_spark_async_devtools.local_cluster.network import HOST, port_in_use
from airflow_spark_async_devtools.local_cluster.processes import alive, signal_process, wait_gone

__all__ = [
    "MARKER_ENV",
    "PortBusyError",
    "check_ports_free",
    "live_pid",
    "port_owner",
    "read_ready",
    "spawn",
    "stack_processes",
    "stop_pid",
    "sweep",
    "write_ready",
]

MARKER_ENV = "AIRFLOW_SPARK_ASYNC_STACK_ID"


class PortBusyError(RuntimeError):
    """A port the stack needs is taken; raised before anything of that component starts."""


def port_owner(port: int) -> str:
    """``"pid 123 (java)"`` for the listener on ``HOST:port`` when this user may see it, else ``""``."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return f"pid {conn.pid}"
    return ""


def check_ports_free(wanted: Mapping[str, tuple[int, str]]) -> None:
    """Raise :class:`PortBusyError` naming every busy port, what the stack wanted it for and the way out."""
    busy = []
    for name, (port, purpose) in wanted.items():
        if port_in_use(port):
            owner = port_owner(port)
            busy.append(f"  {HOST}:{port} ({purpose}) is already in use{f' by {owner}' if owner else ''}"
                        f" -- move it with --port {name}=<free port>")
    if busy:
        raise PortBusyError("cannot start the stack, ports are busy:\n" + "\n".join(busy) +
                            "\n(./dev stack status shows what the stack itself runs; ./dev stack down stops it)")


def spawn(name: str, argv: Sequence[str], *, log: Path, pid_file: Path, env: Mapping[str, str],
          cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session, stdin closed, output appended to ``log``; record its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        fh.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}: {' '.join(argv)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def _carries(proc: psutil.Process, stack_id: str) -> bool:
    try:
        return proc.environ().get(MARKER_ENV) == stack_id
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def live_pid(pid_file: Path, stack_id: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and belongs to this stack (pid reuse guard)."""
    try:
        pid = int(pid_file.read_text().strip())
        proc = psutil.Process(pid)
    except (OSError, ValueError, psutil.Error):
        return None
    return pid if alive(proc) and _carries(proc, stack_id) else None


def stack_processes(stack_id: str) -> list[psutil.Process]:
    """Every live process of this user carrying the stack's marker (never this process or its parents)."""
    me = os.getuid()
    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for proc in psutil.process_iter(["pid", "uids", "status"]):
        info = proc.info
        if info["pid"] in mine or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if info["uids"] is None or info["uids"].real != me:
            continue
        if _carries(proc, stack_id):
            found.append(proc)
    return found


def stop_pid(pid: int, timeout: float) -> bool:
    """SIGTERM ``pid``, wait up to ``timeout``; SIGKILL its session if it is still there. True if it ran."""
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return False
    signal_process(proc, signal.SIGTERM)
    if wait_gone([proc], time.monotonic() + timeout):
        signal_process(proc, signal.SIGKILL)
        wait_gone([proc], time.monotonic() + 5)
    return True


def sweep(stack_id: str, timeout: float = 10.0) -> list[int]:
    """SIGTERM, then SIGKILL, every process still carrying the marker; return their pids."""
    procs = stack_processes(stack_id)
    for proc in procs:
        signal_process(proc, signal.SIGTERM)
    for proc in wait_gone(procs, time.monotonic() + timeout):
        signal_process(proc, signal.SIGKILL)
    wait_gone(procs, time.monotonic() + 5)
    return sorted(p.pid for p in procs)


def write_ready(path: Path, data: Mapping[str, Any]) -> None:
    """The ready file a component writes once it serves: ``up`` waits for it, ``status`` reads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **data}, indent=2) + "\n")
    tmp.replace(path)


def read_ready(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def python_module_argv(module: str, *args: str) -> list[str]:
    """``python -m module args`` with this interpreter (the venv's)."""
    return [sys.executable, "-m", module, *args]
