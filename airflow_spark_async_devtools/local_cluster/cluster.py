"""The local cluster itself: one master and one worker JVM from the ``pyspark`` wheel, started,
inspected and stopped through the files of a workdir (see the package docstring for why it works so)."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from airflow_spark_async.core.spec import MEMORY_SIZE
from airflow_spark_async_devtools.local_cluster.network import HOST, free_ports, port_in_use, probe_master, probe_rest
from airflow_spark_async_devtools.local_cluster.processes import (
    MARKER_ENV,
    MARKER_PROP,
    cluster_processes,
    signal_group,
    signal_process,
    wait_gone,
)

__all__ = ["DEFAULT_WORKDIR", "ClusterStatus", "LocalClusterError", "LocalSparkCluster", "PortInUseError"]

log = logging.getLogger(__name__)

#: Used when no workdir is given; override per call or with ``AIRFLOW_SPARK_ASYNC_CLUSTER_DIR``.
DEFAULT_WORKDIR = Path(
    os.environ.get("AIRFLOW_SPARK_ASYNC_CLUSTER_DIR") or Path(tempfile.gettempdir()) / "airflow-spark-async-cluster"
)

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"

# Environment variables that would make the daemons deviate from what this helper promises
# (other ports, other host names, other config dirs, a half-configured PySpark gateway...).
_SCRUBBED_ENV = (
    "SPARK_CONF_DIR",
    "SPARK_ENV_LOADED",
    "SPARK_MASTER_HOST",
    "SPARK_MASTER_PORT",
    "SPARK_MASTER_WEBUI_PORT",
    "SPARK_MASTER_OPTS",
    "SPARK_WORKER_OPTS",
    "SPARK_DAEMON_JAVA_OPTS",
    "SPARK_WORKER_CORES",
    "SPARK_WORKER_MEMORY",
    "SPARK_WORKER_PORT",
    "SPARK_WORKER_WEBUI_PORT",
    "SPARK_WORKER_DIR",
    "SPARK_WORKER_INSTANCES",
    "SPARK_PUBLIC_DNS",
    "SPARK_LOCAL_HOSTNAME",
    "SPARK_LOCAL_DIRS",
    "PYSPARK_DRIVER_PYTHON",
    "PYSPARK_DRIVER_PYTHON_OPTS",
    "PYSPARK_SUBMIT_ARGS",
    "PYSPARK_GATEWAY_PORT",
    "PYSPARK_GATEWAY_SECRET",
)

_STATE_FILE = "cluster.json"
_ROLES = ("master", "worker")


class LocalClusterError(RuntimeError):
    """The local cluster could not be started, inspected or stopped as asked."""


class PortInUseError(LocalClusterError):
    """A port the cluster needs is already taken on 127.0.0.1.

    Raised *before* any JVM is started, so nothing needs cleaning up.
    """

    def __init__(self, port: int, purpose: str, option: str) -> None:
        self.port = port
        self.purpose = purpose
        super().__init__(
            f"Port {port} ({purpose}) on {HOST} is already in use. Stop whatever listens there "
            f"or choose another port ({option})."
        )


@dataclass(frozen=True)
class ClusterStatus:
    """A snapshot of the cluster recorded in a workdir.

    ``running`` means both daemon processes exist; ``healthy`` additionally means the master reports
    ALIVE with at least one ALIVE worker and the REST server answers -- i.e. a submission would be
    accepted.  ``problems`` says why not, in words, when ``healthy`` is false.
    """

    workdir: Path
    running: bool
    healthy: bool
    master_pid: int | None = None
    worker_pid: int | None = None
    master_state: str | None = None
    alive_workers: int = 0
    rest_ready: bool = False
    master_url: str | None = None
    rest_url: str | None = None
    ui_url: str | None = None
    worker_ui_url: str | None = None
    spark_version: str | None = None
    already_running: bool = False
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (used by ``status --json``)."""
        data = asdict(self)
        data["workdir"] = str(self.workdir)
        data["problems"] = list(self.problems)
        return data


@dataclass
class LocalSparkCluster:
    """One Spark master + one worker on 127.0.0.1, started from the installed ``pyspark``.

    The defaults are Spark's own well-known ports but for the master's web UI, on 8090 instead of
    Spark's 8080 (Airflow's api-server default: ``./dev stack`` runs both); tests should pass free ports (see
    :meth:`with_free_ports`) so they can run next to a developer's cluster.  Calling :meth:`start`
    on a workdir whose cluster is already up is a no-op that reports the running cluster, so CI
    scripts and fixtures can call it unconditionally.

    As a context manager it starts on enter and stops on exit -- unless the cluster was already
    running on enter, in which case it is left running for whoever started it.
    """

    workdir: Path = field(default_factory=lambda: DEFAULT_WORKDIR)
    master_port: int = 7077
    rest_port: int = 6066
    #: not Spark's 8080: that is Airflow's api-server default, and both run side by side here
    ui_port: int = 8090
    worker_ui_port: int = 8081
    worker_cores: int = 2
    worker_memory: str = "2g"
    #: Interpreter for cluster-mode drivers and executors (PYSPARK_PYTHON in the worker's environment).
    python: str = field(default_factory=lambda: sys.executable)
    #: Spark installation to run; ``None`` means the directory of the installed ``pyspark`` package.
    spark_home: Path | None = None
    startup_timeout: float = 120.0
    stop_timeout: float = 20.0

    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False, repr=False)
    _started_here: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).expanduser().resolve()
        ports = {
            "--master-port": self.master_port,
            "--rest-port": self.rest_port,
            "--ui-port": self.ui_port,
            "--worker-ui-port": self.worker_ui_port,
        }
        for option, port in ports.items():
            if not 0 < port < 65536:
                raise LocalClusterError(f"{option} must be between 1 and 65535, got {port}")
        if len(set(ports.values())) != len(ports):
            raise LocalClusterError(f"the four ports must differ, got {ports}")
        if self.worker_cores < 1:
            raise LocalClusterError(f"worker_cores must be >= 1, got {self.worker_cores}")
        if not MEMORY_SIZE.match(self.worker_memory):
            raise LocalClusterError(f"worker_memory must look like '2g' or '512m', got {self.worker_memory!r}")

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def with_free_ports(cls, workdir: Path | str, **kwargs: Any) -> LocalSparkCluster:
        """A cluster on four currently free ports -- for tests that must not clash with anything.

        There is an unavoidable race between picking a port and the JVM binding it; the daemons run
        with ``spark.port.maxRetries=0`` so a lost race fails loudly instead of shifting ports.
        """
        master_port, rest_port, ui_port, worker_ui_port = free_ports(4)
        return cls(
            workdir=Path(workdir),
            master_port=master_port,
            rest_port=rest_port,
            ui_port=ui_port,
            worker_ui_port=worker_ui_port,
            **kwargs,
        )

    @classmethod
    def from_workdir(cls, workdir: Path | str | None = None, **overrides: Any) -> LocalSparkCluster:
        """The cluster recorded in ``workdir``: settings from its ``cluster.json``, then ``overrides``.

        This is what the CLI uses, so ``stop``/``status`` need only ``--workdir`` whatever ports
        ``start`` was given, and a bare ``start`` reports a running cluster instead of complaining that
        its ports differ from the defaults.  ``None`` overrides are ignored; settings found in neither
        place take the class defaults.
        """
        path = Path(workdir) if workdir is not None else DEFAULT_WORKDIR
        state = _read_json(path / _STATE_FILE) or {}
        params: dict[str, Any] = {}
        for key in ("master_port", "rest_port", "ui_port", "worker_ui_port", "worker_cores"):
            if isinstance(state.get(key), int):
                params[key] = state[key]
        for key in ("worker_memory", "python"):
            if isinstance(state.get(key), str):
                params[key] = state[key]
        params.update({key: value for key, value in overrides.items() if value is not None})
        return cls(workdir=path, **params)

    # ------------------------------------------------------------------ addresses

    @property
    def master_url(self) -> str:
        """``spark://127.0.0.1:<master_port>`` -- what ``spark.master`` must say."""
        return f"spark://{HOST}:{self.master_port}"

    @property
    def rest_url(self) -> str:
        """Base URL of the REST submission server (append ``/v1/submissions/...``)."""
        return f"http://{HOST}:{self.rest_port}"

    @property
    def ui_url(self) -> str:
        """Master web UI; ``<ui_url>/json/`` is the machine-readable cluster state."""
        return f"http://{HOST}:{self.ui_port}"

    @property
    def worker_ui_url(self) -> str:
        """Worker web UI; ``<worker_ui_url>/log/?driverId=<id>&logType=stderr`` serves driver logs."""
        return f"http://{HOST}:{self.worker_ui_port}"

    @property
    def work_dir(self) -> Path:
        """The worker's ``--work-dir``: cluster-mode drivers write ``<work_dir>/<driver-id>/std{out,err}``."""
        return self.workdir / "work"

    def driver_log(self, driver_id: str, log_type: str = "stderr") -> Path:
        """Path of a cluster-mode driver's ``stdout`` or ``stderr`` file on this (single) worker."""
        if log_type not in ("stdout", "stderr"):
            raise ValueError(f"log_type must be 'stdout' or 'stderr', got {log_type!r}")
        return self.work_dir / driver_id / log_type

    def log_file(self, role: str) -> Path:
        """The daemon log of ``"master"`` or ``"worker"`` (JVM stdout + stderr)."""
        return self.workdir / f"{role}.log"

    # ------------------------------------------------------------------ public API

    def start(self) -> ClusterStatus:
        """Start master and worker and wait until a submission would be accepted.

        Idempotent: if this workdir's cluster is already up (with the same ports) it is reported,
        not restarted.  Leftovers of a crashed cluster are cleaned up first.  Raises
        :class:`PortInUseError` when a port is taken and :class:`LocalClusterError` when the daemons
        do not come up within ``startup_timeout`` (the error carries the tail of their logs).
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            current = self.status()
            if current.running:
                self._check_same_config()
                if not current.healthy:
                    current = self._wait_healthy(time.monotonic() + self.startup_timeout, adopt=True)
                log.info("Spark cluster in %s is already running", self.workdir)
                return replace(current, already_running=True)
            # Nothing (complete) is running: remove whatever a crashed run left behind.
            self._stop_locked(quiet=True)
            return self._start_locked()

    def stop(self) -> bool:
        """Stop every process of this workdir's cluster; return whether anything was running.

        SIGTERM to the worker first (it kills its drivers and executors and tells the master), then
        to the master, then to anything else carrying the cluster id (e.g. orphaned driver Python
        processes); SIGKILL whatever is still alive after ``stop_timeout``.  Pid and state files are
        removed; logs and ``work/`` are kept for post-mortems.  Safe to call when nothing runs.
        """
        if not self.workdir.exists():
            return False
        with self._lock():
            return self._stop_locked(quiet=False)

    def status(self) -> ClusterStatus:
        """Inspect the cluster recorded in the workdir (pids, master ``/json/``, REST readiness)."""
        state = _read_json(self.workdir / _STATE_FILE)
        if not state:
            return ClusterStatus(
                workdir=self.workdir, running=False, healthy=False, problems=("not started in this workdir",)
            )
        cluster_id = str(state.get("cluster_id", ""))
        pids = {role: self._live_pid(role, cluster_id) for role in _ROLES}
        ports = {key: int(state.get(key, getattr(self, key))) for key in ("master_port", "rest_port", "ui_port")}
        worker_ui_port = int(state.get("worker_ui_port", self.worker_ui_port))
        problems = [f"{role} process is not running" for role, pid in pids.items() if pid is None]
        master_state, alive_workers, rest_ready = None, 0, False
        if pids["master"] is not None:
            master_state, alive_workers = probe_master(ports["ui_port"], worker_ui_port)
            rest_ready = probe_rest(ports["rest_port"])
            if master_state != "ALIVE":
                problems.append(f"master state is {master_state or 'unknown (web UI not answering)'}")
            if alive_workers < 1:
                problems.append("no ALIVE worker registered with the master")
            if not rest_ready:
                problems.append("REST submission server not answering")
        running = all(pid is not None for pid in pids.values())
        return ClusterStatus(
            workdir=self.workdir,
            running=running,
            healthy=running and not problems,
            master_pid=pids["master"],
            worker_pid=pids["worker"],
            master_state=master_state,
            alive_workers=alive_workers,
            rest_ready=rest_ready,
            master_url=f"spark://{HOST}:{ports['master_port']}",
            rest_url=f"http://{HOST}:{ports['rest_port']}",
            ui_url=f"http://{HOST}:{ports['ui_port']}",
            worker_ui_url=f"http://{HOST}:{worker_ui_port}",
            spark_version=state.get("spark_version"),
            problems=tuple(problems),
        )

    def __enter__(self) -> LocalSparkCluster:
        self._started_here = not self.start().already_running
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._started_here:
            self.stop()

    # ------------------------------------------------------------------ starting

    def _start_locked(self) -> ClusterStatus:
        spark_home = self._resolve_spark_home()
        java = _find_java()
        self._check_ports_free()
        for sub in ("conf", "local", "work"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)

        cluster_id = uuid.uuid4().hex
        env = self._daemon_env(spark_home, cluster_id)
        state: dict[str, Any] = {
            "cluster_id": cluster_id,
            "master_port": self.master_port,
            "rest_port": self.rest_port,
            "ui_port": self.ui_port,
            "worker_ui_port": self.worker_ui_port,
            "worker_cores": self.worker_cores,
            "worker_memory": self.worker_memory,
            "python": self.python,
            "spark_home": str(spark_home),
            "spark_version": _pyspark_version(),
            "java": java,
            "started_at": time.time(),
        }
        # Written before the first JVM exists so that a crash mid-start can still be cleaned by stop().
        _write_json(self.workdir / _STATE_FILE, state)

        started = time.monotonic()
        deadline = started + self.startup_timeout
        spark_class = str(spark_home / "bin" / "spark-class")
        try:
            self._spawn(
                "master",
                [
                    spark_class,
                    MASTER_CLASS,
                    "--host",
                    HOST,
                    "--port",
                    str(self.master_port),
                    "--webui-port",
                    str(self.ui_port),
                ],
                env,
            )
            # Start the worker only once the master listens: a worker that misses the master backs off
            # for up to ~10 s before its next registration attempt.
            self._wait_for(deadline, "master to become ALIVE", lambda: probe_master(self.ui_port)[0] == "ALIVE")
            self._spawn(
                "worker",
                [
                    spark_class,
                    WORKER_CLASS,
                    self.master_url,
                    "--host",
                    HOST,
                    "--cores",
                    str(self.worker_cores),
                    "--memory",
                    self.worker_memory,
                    "--webui-port",
                    str(self.worker_ui_port),
                    "--work-dir",
                    str(self.work_dir),
                ],
                env,
            )
            status = self._wait_healthy(deadline)
        except BaseException:
            # Includes KeyboardInterrupt: never leave half a cluster behind.
            with contextlib.suppress(Exception):
                self._stop_locked(quiet=True)
            raise
        log.info("Spark cluster started in %.1fs: %s", time.monotonic() - started, self.master_url)
        return status

    def _daemon_env(self, spark_home: Path, cluster_id: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        common_opts = f"-Dspark.port.maxRetries=0 -D{MARKER_PROP}={cluster_id}"
        env.update(
            {
                "SPARK_HOME": str(spark_home),
                "SPARK_CONF_DIR": str(self.workdir / "conf"),
                "SPARK_LOCAL_DIRS": str(self.workdir / "local"),
                "SPARK_LOCAL_IP": HOST,
                "SPARK_DAEMON_JAVA_OPTS": common_opts,
                "SPARK_MASTER_OPTS": (
                    "-Dspark.master.rest.enabled=true "
                    f"-Dspark.master.rest.host={HOST} -Dspark.master.rest.port={self.rest_port}"
                ),
                "PYSPARK_PYTHON": self.python,
                MARKER_ENV: cluster_id,
            }
        )
        return env

    def _spawn(self, role: str, argv: list[str], env: dict[str, str]) -> None:
        log_path = self.log_file(role)
        with log_path.open("ab") as log_fh:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log_fh.write(f"\n===== {stamp} starting {role}: {' '.join(argv)}\n".encode())
            log_fh.flush()
            proc = subprocess.Popen(
                ["bash", *argv],  # bash explicitly: wheels do not always keep the executable bit
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self._procs[role] = proc
        (self.workdir / f"{role}.pid").write_text(f"{proc.pid}\n")
        log.debug("started %s pid %s, log %s", role, proc.pid, log_path)

    def _wait_healthy(self, deadline: float, *, adopt: bool = False) -> ClusterStatus:
        """Poll :meth:`status` until healthy; fail fast if a daemon we started died."""
        result: list[ClusterStatus] = []

        def healthy() -> bool:
            result[:] = [self.status()]
            return result[0].healthy

        self._wait_for(
            deadline,
            "master ALIVE with 1 ALIVE worker and REST server answering",
            healthy,
            check_procs=not adopt,
        )
        return result[0]

    def _wait_for(self, deadline: float, what: str, predicate: Callable[[], bool], *, check_procs: bool = True) -> None:
        while True:
            if predicate():
                return
            if check_procs:
                for role, proc in self._procs.items():
                    if proc.poll() is not None:
                        raise LocalClusterError(
                            f"Spark {role} exited with code {proc.returncode} while waiting for {what}.\n"
                            f"{self._log_tails()}"
                        )
            if time.monotonic() > deadline:
                raise LocalClusterError(
                    f"Timed out after {self.startup_timeout:.0f}s waiting for {what}.\n{self._log_tails()}"
                )
            time.sleep(0.25)

    def _check_ports_free(self) -> None:
        wanted = (
            (self.master_port, "master RPC", "--master-port / master_port"),
            (self.rest_port, "REST submission server", "--rest-port / rest_port"),
            (self.ui_port, "master web UI", "--ui-port / ui_port"),
            (self.worker_ui_port, "worker web UI", "--worker-ui-port / worker_ui_port"),
        )
        for port, purpose, option in wanted:
            if port_in_use(port):
                raise PortInUseError(port, purpose, option)

    def _check_same_config(self) -> None:
        state = _read_json(self.workdir / _STATE_FILE) or {}
        wanted = {
            "master_port": self.master_port,
            "rest_port": self.rest_port,
            "ui_port": self.ui_port,
            "worker_ui_port": self.worker_ui_port,
        }
        differing = {k: (state.get(k), v) for k, v in wanted.items() if state.get(k) != v}
        if differing:
            details = ", ".join(f"{k}: running {old}, requested {new}" for k, (old, new) in differing.items())
            raise LocalClusterError(
                f"A cluster with other ports is already running in {self.workdir} ({details}). "
                "Stop it first or use another workdir."
            )

    def _resolve_spark_home(self) -> Path:
        if self.spark_home is not None:
            home = Path(self.spark_home)
        else:
            spec = importlib.util.find_spec("pyspark")
            if spec is None or not spec.submodule_search_locations:
                raise LocalClusterError("pyspark is not installed in this interpreter")
            home = Path(next(iter(spec.submodule_search_locations)))
        if not (home / "bin" / "spark-class").is_file() or not (home / "jars").is_dir():
            raise LocalClusterError(f"{home} does not look like a Spark home (no bin/spark-class or jars/)")
        return home

    # ------------------------------------------------------------------ stopping

    def _stop_locked(self, *, quiet: bool) -> bool:
        state = _read_json(self.workdir / _STATE_FILE) or {}
        cluster_id = str(state.get("cluster_id", ""))
        leaders: dict[str, psutil.Process] = {}
        for role in _ROLES:
            pid = self._live_pid(role, cluster_id)
            if pid is not None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    leaders[role] = psutil.Process(pid)
        anything = bool(leaders)
        deadline = time.monotonic() + self.stop_timeout

        # 1. Worker first: on SIGTERM it kills its driver and executor JVMs and deregisters.
        # 2. Then the master.  Each leader's whole process group gets the signal (we made them
        #    group leaders), which also reaches driver Python processes that lost their parent.
        for role in ("worker", "master"):
            if role in leaders:
                signal_group(leaders[role], signal.SIGTERM)
                wait_gone([leaders[role]], min(deadline, time.monotonic() + self.stop_timeout / 2))

        # 3. Anything else still carrying the cluster id (e.g. a driver's orphaned Python process),
        #    SIGKILL for whatever outlives the timeout.
        leftovers: list[psutil.Process] = []
        if cluster_id:
            rest = cluster_processes(cluster_id) + list(leaders.values())
            anything = anything or bool(rest)
            for proc in rest:
                signal_process(proc, signal.SIGTERM)
            for proc in wait_gone(rest, deadline):
                log.warning("pid %s ignored SIGTERM for %.0fs; sending SIGKILL", proc.pid, self.stop_timeout)
                signal_process(proc, signal.SIGKILL)
            leftovers = wait_gone(cluster_processes(cluster_id), time.monotonic() + 5)
        elif leaders:  # no cluster id (cannot normally happen): at least do not leave our own daemons
            for proc in wait_gone(list(leaders.values()), deadline):
                signal_group(proc, signal.SIGKILL)

        for popen in self._procs.values():  # reap our own children so no zombies linger
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=5)
        self._procs.clear()
        if leftovers:
            pids = sorted(p.pid for p in leftovers)
            raise LocalClusterError(f"could not stop processes {pids} of the cluster in {self.workdir}")
        for name in ("master.pid", "worker.pid", _STATE_FILE):
            (self.workdir / name).unlink(missing_ok=True)
        if anything and not quiet:
            log.info("Spark cluster in %s stopped", self.workdir)
        return anything

    # ------------------------------------------------------------------ small helpers

    def _live_pid(self, role: str, cluster_id: str) -> int | None:
        """The pid in ``<role>.pid`` if that process is alive *and* is this cluster's daemon.

        The check against the cluster id in its command line protects against pid reuse: a stale
        pid file must never make ``stop`` signal an unrelated process.
        """
        try:
            pid = int((self.workdir / f"{role}.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            cmdline = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        main_class = MASTER_CLASS if role == "master" else WORKER_CLASS
        if main_class not in cmdline:
            return None
        own = self._procs.get(role)
        if own is not None and own.pid == pid:
            return pid  # still in spark-class's bash phase, before the -D marker exists
        return pid if cluster_id and f"-D{MARKER_PROP}={cluster_id}" in cmdline else None

    def _log_tails(self, lines: int = 30) -> str:
        parts = []
        for role in _ROLES:
            path = self.log_file(role)
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- last lines of {path} ---\n" + "\n".join(tail))
        return "\n".join(parts)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise start/stop on one workdir (parallel CI jobs, two terminals...)."""
        with (self.workdir / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------- module helpers


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _pyspark_version() -> str | None:
    try:
        return importlib.metadata.version("pyspark")
    except importlib.metadata.PackageNotFoundError:
        return None


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
        raise LocalClusterError(f"JAVA_HOME={java_home} has no bin/java")
    found = shutil.which("java")
    if not found:
        raise LocalClusterError("Java not found: install a JDK 17+ or set JAVA_HOME")
    return found
