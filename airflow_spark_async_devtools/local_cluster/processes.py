"""Finding and signalling every process of one local cluster, with psutil.

Pids alone are not enough: Spark leaves a killed cluster-mode driver's Python process orphaned, and a
stale pid may belong to another process by now. So every process of a cluster carries its id (a ``-D``
property on the daemons, an environment variable inherited by drivers and executors), and
:func:`cluster_processes` finds them by it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil

__all__ = ["MARKER_ENV", "MARKER_PROP", "alive", "cluster_processes", "signal_group", "signal_process", "wait_gone"]

# The tag that lets ``stop`` recognise every process of one cluster (see module docstring).
MARKER_ENV = "AIRFLOW_SPARK_ASYNC_CLUSTER_ID"
MARKER_PROP = "airflow.spark.async.cluster.id"


def alive(proc: psutil.Process) -> bool:
    """Running and not a zombie; ``is_running`` also notices when the pid was reused meanwhile."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def signal_process(proc: psutil.Process, sig: signal.Signals) -> None:
    # psutil refuses to signal a pid that now belongs to another process.
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        proc.send_signal(sig)


def signal_group(proc: psutil.Process, sig: signal.Signals) -> None:
    """Signal the process group led by ``proc`` (only ``proc`` if it leads no group)."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    if pgid != proc.pid or not alive(proc):
        signal_process(proc, sig)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_gone(procs: list[psutil.Process], deadline: float) -> list[psutil.Process]:
    """Wait until ``procs`` are gone (reaping our own children); return the survivors.

    Zombies count as gone: where PID 1 does not reap (some containers) they would never disappear.
    """
    remaining = list(procs)
    while True:
        for proc in remaining:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(proc.pid, os.WNOHANG)  # reaps it if it is our child, else raises
        remaining = [proc for proc in remaining if alive(proc)]
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(0.1)


def cluster_processes(cluster_id: str) -> list[psutil.Process]:
    """Every live process of the current user tagged with ``cluster_id`` (env var or ``-D`` marker)."""
    me = os.getuid()
    marker = f"-D{MARKER_PROP}={cluster_id}"
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["pid", "uids", "cmdline", "status"]):
        info = proc.info
        if info["pid"] == os.getpid() or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if info["uids"] is None or info["uids"].real != me:
            continue
        try:
            tagged = marker in (info["cmdline"] or []) or proc.environ().get(MARKER_ENV) == cluster_id
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if tagged:
            found[proc.pid] = proc
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    found.setdefault(child.pid, child)
    return list(found.values())
