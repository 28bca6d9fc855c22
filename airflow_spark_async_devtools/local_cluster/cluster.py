"""Start and stop a throw-away Spark standalone cluster on 127.0.0.1 from the ``pyspark`` wheel.

This is a development helper for laptops and CI, **not** a cluster manager: one master and one worker,
both on loopback, both JVMs started from the jars that ship inside the installed ``pyspark`` package, so
the cluster always runs exactly the Spark version the tests import.  It exists so that the standalone
REST backend of this provider can be exercised end to end (submit / poll / kill a real driver) without
Docker or a Spark download.

.. warning::

   The master's REST submission server (``spark.master.rest.enabled``) accepts **unauthenticated**
   submissions: anyone who can reach its port can run arbitrary code as the user that started the
   cluster.  This helper therefore binds every daemon to ``127.0.0.1`` and offers no way to change
   that.  Never expose the REST port (or any port of this cluster) beyond loopback; a real deployment
   needs ``spark.master.rest.filters=org.apache.spark.ui.JWSFilter`` with a secret, TLS and a firewall.

Usage from the shell::

    python -m airflow_spark_async.standalone.local_cluster start  [--workdir DIR] [--master-port 7077]
        [--rest-port 6066] [--ui-port 8080] [--worker-ui-port 8081] [--worker-cores 2] [--worker-memory 2g]
    python -m airflow_spark_async.standalone.local_cluster status [--workdir DIR] [--json]
    python -m airflow_spark_async.standalone.local_cluster stop   [--workdir DIR]

and from Python::

    with LocalSparkCluster(workdir=tmp_path) as cluster:
        submit_to(cluster.rest_url, master=cluster.master_url)

How it works, and why:

* ``pyspark`` ships ``bin/spark-class`` but not ``sbin/start-master.sh``, so both daemons are started
  with ``spark-class <MainClass>`` directly, each in its own session/process group
  (``start_new_session``) so that a terminal's Ctrl-C does not take them down after ``start`` returned,
  and so that ``stop`` can signal a whole group.
* Spark options reach the daemons through ``SPARK_MASTER_OPTS`` and ``SPARK_DAEMON_JAVA_OPTS`` (read
  by ``spark-class``'s launcher; the user's own values of those and of ``SPARK_WORKER_*`` are cleared).
  ``spark.port.maxRetries=0`` makes a port taken between our free-port check and the JVM's bind a hard
  error instead of Spark silently moving the UI to the next port.
* ``SPARK_CONF_DIR`` points at an empty ``<workdir>/conf`` so a stray ``spark-env.sh`` or
  ``spark-defaults.conf`` of the machine cannot change the cluster; ``SPARK_LOCAL_DIRS`` points into the
  workdir so shuffle/scratch files do not pile up in ``/tmp``.
* ``PYSPARK_PYTHON`` is set to the interpreter running this module (by default) in the worker's
  environment, and ``PYSPARK_DRIVER_PYTHON`` is removed from it.  Drivers and executors are child
  processes of the worker and inherit that environment, so cluster-mode PySpark drivers and their
  executors run with the same virtualenv as the tests.  A submission can still choose another
  interpreter; for the driver, Spark's ``PythonRunner`` takes the first of ``spark.pyspark.driver.python``,
  ``spark.pyspark.python``, ``PYSPARK_DRIVER_PYTHON``, ``PYSPARK_PYTHON`` (the submission's
  ``environmentVariables`` override the worker's environment).  A leftover ``PYSPARK_DRIVER_PYTHON``
  (e.g. ``jupyter``) in the shell would otherwise win over all of that, hence its removal.
* Every process of the cluster carries a random cluster id, both as a ``-D`` property on the daemons'
  command lines and as an environment variable inherited by drivers, executors and their Python
  children.  ``stop`` uses it to find *all* of them, including the Python process of a killed
  cluster-mode driver, which Spark leaves orphaned (re-parented to init) when the worker kills the
  driver JVM.  Pid files alone cannot find those, and a bare pid could have been reused by now.

Files in the workdir (default ``$TMPDIR/airflow-spark-async-cluster`` or
``$AIRFLOW_SPARK_ASYNC_CLUSTER_DIR``, see :data:`DEFAULT_WORKDIR`): ``cluster.json`` (ports, cluster id,
versions), ``master.pid``, ``worker.pid``, ``master.log``, ``worker.log``, ``conf/``, ``local/`` and
``work/`` -- the worker's work dir, where each cluster-mode driver gets ``work/<driver-id>/stdout`` (the
Python app's stdout *and* stderr) and ``work/<driver-id>/stderr`` (the driver JVM's log4j output).

POSIX only (``spark-class`` is a bash script); needs Java 17+ on ``JAVA_HOME`` or ``PATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from airflow_spark_async.core.spec import MEMORY_SIZE

__all__ = [
    "DEFAULT_WORKDIR",
    "HOST",
    "ClusterStatus",
    "LocalClusterError",
    "LocalSparkCluster",
    "PortInUseError",
    "main",
]

log = logging.getLogger(__name__)

#: Every daemon binds here; deliberately not configurable (see the module warning).
HOST = "127.0.0.1"

#: Used when no workdir is given; override per call or with ``AIRFLOW_SPARK_ASYNC_CLUSTER_DIR``.
DEFAULT_WORKDIR = Path(
    os.environ.get("AIRFLOW_SPARK_ASYNC_CLUSTER_DIR")
    or Path(tempfile.gettempdir()) / "airflow-spark-async-cluster"
)

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"

# The tag that lets ``stop`` recognise every process of one cluster (see module docstring).
_MARKER_ENV = "AIRFLOW_SPARK_ASYNC_CLUSTER_ID"
_MARKER_PROP = "airflow.spark.async.cluster.id"

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

    The defaults are Spark's own well-known ports; tests should pass free ports (see
    :meth:`with_free_ports`) so they can run next to a developer's cluster.  Calling :meth:`start`
    on a workdir whose cluster is already up is a no-op that reports the running cluster, so CI
    scripts and fixtures can call it unconditionally.

    As a context manager it starts on enter and stops on exit -- unless the cluster was already
    running on enter, in which case it is left running for whoever started it.
    """

    workdir: Path = field(default_factory=lambda: DEFAULT_WORKDIR)
    master_port: int = 7077
    rest_port: int = 6066
    ui_port: int = 8080
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
            raise LocalClusterError(
                f"worker_memory must look like '2g' or '512m', got {self.worker_memory!r}"
            )

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def with_free_ports(cls, workdir: Path | str, **kwargs: Any) -> LocalSparkCluster:
        """A cluster on four currently free ports -- for tests that must not clash with anything.

        There is an unavoidable race between picking a port and the JVM binding it; the daemons run
        with ``spark.port.maxRetries=0`` so a lost race fails loudly instead of shifting ports.
        """
        master_port, rest_port, ui_port, worker_ui_port = _free_ports(4)
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
        ports = {
            key: int(state.get(key, getattr(self, key))) for key in ("master_port", "rest_port", "ui_port")
        }
        worker_ui_port = int(state.get("worker_ui_port", self.worker_ui_port))
        problems = [f"{role} process is not running" for role, pid in pids.items() if pid is None]
        master_state, alive_workers, rest_ready = None, 0, False
        if pids["master"] is not None:
            master_state, alive_workers = _probe_master(ports["ui_port"], worker_ui_port)
            rest_ready = _probe_rest(ports["rest_port"])
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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
            self._wait_for(
                deadline, "master to become ALIVE", lambda: _probe_master(self.ui_port)[0] == "ALIVE"
            )
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
        common_opts = f"-Dspark.port.maxRetries=0 -D{_MARKER_PROP}={cluster_id}"
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
                _MARKER_ENV: cluster_id,
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

    def _wait_for(
        self, deadline: float, what: str, predicate: Callable[[], bool], *, check_procs: bool = True
    ) -> None:
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
            if _port_in_use(port):
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
                _signal_group(leaders[role], signal.SIGTERM)
                _wait_gone([leaders[role]], min(deadline, time.monotonic() + self.stop_timeout / 2))

        # 3. Anything else still carrying the cluster id (e.g. a driver's orphaned Python process),
        #    SIGKILL for whatever outlives the timeout.
        leftovers: list[psutil.Process] = []
        if cluster_id:
            rest = _cluster_processes(cluster_id) + list(leaders.values())
            anything = anything or bool(rest)
            for proc in rest:
                _signal(proc, signal.SIGTERM)
            for proc in _wait_gone(rest, deadline):
                log.warning("pid %s ignored SIGTERM for %.0fs; sending SIGKILL", proc.pid, self.stop_timeout)
                _signal(proc, signal.SIGKILL)
            leftovers = _wait_gone(_cluster_processes(cluster_id), time.monotonic() + 5)
        elif leaders:  # no cluster id (cannot normally happen): at least do not leave our own daemons
            for proc in _wait_gone(list(leaders.values()), deadline):
                _signal_group(proc, signal.SIGKILL)

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
        return pid if cluster_id and f"-D{_MARKER_PROP}={cluster_id}" in cmdline else None

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


def _port_in_use(port: int) -> bool:
    """True if something listens on, or holds, ``HOST:port``.

    Both checks, because a bind test alone misses a wildcard listener on macOS (BSD lets a specific
    address bind next to ``0.0.0.0`` with SO_REUSEADDR, as the JVM does) and a connect test alone
    misses a bound-but-not-listening socket.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        if sock.connect_ex((HOST, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _http_json(url: str, timeout: float = 2.0) -> tuple[int, dict[str, Any] | None]:
    """GET ``url``; (status, parsed JSON body or None).  (0, None) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # only fixed http://127.0.0.1 URLs
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    except (OSError, ValueError):
        return 0, None
    try:
        data = json.loads(body)
    except ValueError:
        return status, None
    return status, data if isinstance(data, dict) else None


def _probe_master(ui_port: int, worker_ui_port: int | None = None) -> tuple[str | None, int]:
    """(master ``status`` from ``/json/``, number of ALIVE workers [with the given UI port])."""
    _, data = _http_json(f"http://{HOST}:{ui_port}/json/")
    if not data:
        return None, 0
    workers = [w for w in data.get("workers", []) if isinstance(w, dict) and w.get("state") == "ALIVE"]
    if worker_ui_port is not None:
        workers = [w for w in workers if str(w.get("webuiaddress", "")).endswith(f":{worker_ui_port}")]
    return data.get("status"), len(workers)


def _probe_rest(rest_port: int) -> bool:
    """Whether the REST server answers; ``readyz`` exists from Spark 4.0 (400 before: still up)."""
    status, data = _http_json(f"http://{HOST}:{rest_port}/v1/submissions/readyz")
    if status == 200:
        return bool(data and data.get("success", True))
    return status == 400 and data is not None and data.get("action") == "ErrorResponse"


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie; ``is_running`` also notices when the pid was reused meanwhile."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _signal(proc: psutil.Process, sig: signal.Signals) -> None:
    # psutil refuses to signal a pid that now belongs to another process.
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        proc.send_signal(sig)


def _signal_group(proc: psutil.Process, sig: signal.Signals) -> None:
    """Signal the process group led by ``proc`` (only ``proc`` if it leads no group)."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    if pgid != proc.pid or not _alive(proc):
        _signal(proc, sig)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_gone(procs: list[psutil.Process], deadline: float) -> list[psutil.Process]:
    """Wait until ``procs`` are gone (reaping our own children); return the survivors.

    Zombies count as gone: where PID 1 does not reap (some containers) they would never disappear.
    """
    remaining = list(procs)
    while True:
        for proc in remaining:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(proc.pid, os.WNOHANG)  # reaps it if it is our child, else raises
        remaining = [proc for proc in remaining if _alive(proc)]
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(0.1)


def _cluster_processes(cluster_id: str) -> list[psutil.Process]:
    """Every live process of the current user tagged with ``cluster_id`` (env var or ``-D`` marker)."""
    me = os.getuid()
    marker = f"-D{_MARKER_PROP}={cluster_id}"
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["pid", "uids", "cmdline", "status"]):
        info = proc.info
        if info["pid"] == os.getpid() or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if info["uids"] is None or info["uids"].real != me:
            continue
        try:
            tagged = marker in (info["cmdline"] or []) or proc.environ().get(_MARKER_ENV) == cluster_id
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if tagged:
            found[proc.pid] = proc
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    found.setdefault(child.pid, child)
    return list(found.values())


# ---------------------------------------------------------------------- CLI


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"pid files, logs, driver work dirs (default: {DEFAULT_WORKDIR})",
    )
    # Port/size options default to None so that a cluster recorded in the workdir keeps its settings;
    # the effective defaults are the dataclass defaults shown in the help.
    common.add_argument("--master-port", type=int, help="master RPC port (default 7077)")
    common.add_argument("--rest-port", type=int, help="REST submission port (default 6066)")
    common.add_argument("--ui-port", type=int, help="master web UI port (default 8080)")
    common.add_argument("--worker-ui-port", type=int, help="worker web UI port (default 8081)")
    common.add_argument(
        "--worker-cores",
        type=int,
        help="cores the worker offers; each cluster-mode driver takes 1 (default 2)",
    )
    common.add_argument("--worker-memory", help="memory the worker offers (default 2g)")
    common.add_argument("--timeout", type=float, help="seconds to wait for start (default 120)")
    common.add_argument("--json", action="store_true", help="print the status as JSON")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    parser = argparse.ArgumentParser(
        prog="python -m airflow_spark_async.standalone.local_cluster",
        description="Start/stop a local Spark standalone cluster (loopback only, unauthenticated REST!).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("start", parents=[common], help="start (or report the already running) cluster")
    sub.add_parser("stop", parents=[common], help="stop the cluster and every driver it runs")
    sub.add_parser("status", parents=[common], help="exit 0 if healthy, 1 otherwise")
    return parser


def _print_status(status: ClusterStatus, as_json: bool, headline: str) -> None:
    if as_json:
        print(json.dumps(status.to_dict(), indent=2))
        return
    print(headline)
    if status.running:
        print(f"  master     {status.master_url}  (pid {status.master_pid}, state {status.master_state})")
        print(f"  REST       {status.rest_url}  (ready: {status.rest_ready})")
        print(f"  master UI  {status.ui_url}")
        workers = f"pid {status.worker_pid}, alive workers {status.alive_workers}"
        print(f"  worker UI  {status.worker_ui_url}  ({workers})")
        print(f"  spark      {status.spark_version}")
    print(f"  workdir    {status.workdir}  (master.log, worker.log, work/<driver-id>/stdout|stderr)")
    for problem in status.problems:
        print(f"  problem:   {problem}")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    try:
        cluster = LocalSparkCluster.from_workdir(
            args.workdir,
            master_port=args.master_port,
            rest_port=args.rest_port,
            ui_port=args.ui_port,
            worker_ui_port=args.worker_ui_port,
            worker_cores=args.worker_cores,
            worker_memory=args.worker_memory,
            startup_timeout=args.timeout,
        )
        if args.command == "start":
            began = time.monotonic()
            status = cluster.start()
            headline = (
                "Spark standalone cluster already running"
                if status.already_running
                else f"Spark standalone cluster started in {time.monotonic() - began:.1f}s"
            )
            _print_status(status, args.json, headline)
            return 0
        if args.command == "stop":
            stopped = cluster.stop()
            print("stopped" if stopped else f"nothing was running in {cluster.workdir}")
            return 0
        status = cluster.status()
        headline = (
            "healthy" if status.healthy else ("running but unhealthy" if status.running else "not running")
        )
        _print_status(status, args.json, f"Spark standalone cluster {headline}")
        return 0 if status.healthy else 1
    except LocalClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
