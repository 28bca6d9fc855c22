"""Run a real, throw-away Apache Airflow 3 deployment (scheduler, dag-processor, triggerer, api-server).

Why this exists: deferrable operators can only be trusted once they have gone through the real
scheduler -> worker -> triggerer -> worker round trip, including triggerer crashes and user actions
such as "mark failed".  Unit tests with mocked triggers cannot show that, so the end-to-end tests start
every Airflow component as a separate OS process, exactly as a production deployment would, but wired
for speed and isolation:

* a fresh ``AIRFLOW_HOME`` and metadata DB per stack (the migrated DB is cached per test session,
  since ``airflow db migrate`` costs ~6 s and its result is identical for every stack);
* the DB is PostgreSQL or SQLite (``database=``, see below);
* ``LocalExecutor`` (allowed with SQLite in Airflow 3), parallelism chosen by the test;
* ``SimpleAuthManager`` with ``simple_auth_manager_all_admins`` so the REST API needs no user set-up;
* every setting lives in environment variables (no race on generating ``airflow.cfg``);
* dynamically chosen loopback ports, proxies disabled for loopback, nothing needs network;
* every component runs in its own session/process group and is torn down (children included) by
  :meth:`AirflowStack.stop`, so no stray ``airflow`` process survives a test run.

The metadata database
---------------------

``AirflowStack(..., database="postgres")`` — what the e2e tests use (:func:`e2e_database`) — runs on
PostgreSQL, the database production Airflow runs on:

* **one server per test session**, :func:`tests.servers.postgres.shared_server`: started on first
  use from the distribution's binaries (``initdb``/``postgres`` on ``PATH`` or in
  ``/usr/lib/postgresql/<version>/bin``; as root on Debian/Ubuntu, installed with ``apt-get`` if
  missing), a throw-away cluster in a temp dir on a free loopback port with its unix socket in that
  dir, run as the ``postgres`` user when we are root (PostgreSQL refuses root), durability off. It is
  stopped and its dir removed at interpreter exit (``atexit``: after failed tests and Ctrl-C too);
  a SIGKILLed pytest takes it down through ``PR_SET_PDEATHSIG``;
* **one database per stack**, ``airflow_stack_<pid>_<n>``: the session's first stack migrates a
  template database once (~6 s), every stack is a ``CREATE DATABASE ... TEMPLATE`` copy of it
  (under a second), dropped again by :meth:`AirflowStack.stop`;
* the drivers are ``psycopg2`` (the sync engine) and ``asyncpg`` (Airflow's async engine), both in
  the ``dev`` extra; :meth:`AirflowStack.query` reads the DB with either database.

``database="sqlite"`` — the default, so the demo (``scripts/demo.py``), the benchmarks and a
developer's own stack need no PostgreSQL — uses a SQLite file in ``AIRFLOW_HOME``, copied from a
migrated one per stack. SQLite needs two workarounds that PostgreSQL does not: the ``trigger`` table
is rebuilt with AUTOINCREMENT, since SQLite hands a deleted trigger's id to the next trigger
(:func:`_never_reuse_trigger_ids`), and :meth:`AirflowStack.wait_for_trigger_to_run` restarts a
triggerer that never starts a trigger. ``E2E_DATABASE=sqlite`` runs the e2e tests on SQLite
(docs/testing-postgres.md).

Only the standard library, ``httpx`` (an Airflow dependency) and ``psutil`` (ditto, non-Linux fallback)
are used — and, for PostgreSQL, ``psycopg2`` — so the module works in any venv that has Airflow installed.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import dataclasses
import datetime
import itertools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from tests.servers import postgres
from tests.servers.background import free_port

__all__ = [
    "TERMINAL_DAG_RUN_STATES",
    "TERMINAL_TI_STATES",
    "AirflowApiUnavailable",
    "AirflowStack",
    "AirflowStackError",
    "Component",
    "as_utc",
    "e2e_database",
    "free_port",
]

T = TypeVar("T")

#: Dag run states after which nothing happens any more.
TERMINAL_DAG_RUN_STATES: frozenset[str] = frozenset({"success", "failed"})
#: Task instance states that end an attempt (the task will not change state by itself any more).
TERMINAL_TI_STATES: frozenset[str] = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})

# Keys of structured task-log records that only repeat the task identity; dropped by task_log().
_LOG_CONTEXT_KEYS = frozenset(
    {
        "timestamp",
        "event",
        "level",
        "filename",
        "lineno",
        "dag_id",
        "task_id",
        "run_id",
        "map_index",
        "ti_id",
        "try_number",
    }
)

#: Components started by :meth:`AirflowStack.start`, in start order.
DEFAULT_COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")

# Environment variables of the calling process that must not leak into the stack (a developer's own
# AIRFLOW_HOME or connections would silently change what the tests exercise).
_STRIPPED_ENV_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")
_STRIPPED_ENV_NAMES = frozenset({"AIRFLOW_HOME", "AIRFLOW_CONFIG", "_AIRFLOW_PROCESS_CONTEXT"})

#: Seconds a read of the REST API is retried on 5xx answers and transport errors (see AirflowStack.api).
API_READ_RETRY_SECONDS = 20.0

#: The metadata databases a stack can run on (the ``database`` argument of :class:`AirflowStack`).
DATABASES: tuple[str, ...] = ("sqlite", "postgres")
#: Environment variable that chooses the e2e tests' database (:func:`e2e_database`).
E2E_DATABASE_ENV = "E2E_DATABASE"

# One migrated DB per test session and database kind (see module docstring): a SQLite file, or the
# name of a PostgreSQL template database on the session's server.  Guarded by nothing more than the
# GIL: stacks are started sequentially by pytest; a concurrent start simply migrates twice.
_DB_TEMPLATE: Path | None = None
_PG_TEMPLATE: tuple[postgres.PostgresServer, str] | None = None
_PG_DB_NUMBERS = itertools.count(1)


def as_utc(value: datetime.datetime | str) -> datetime.datetime:
    """A timestamp read by :meth:`AirflowStack.query` as an aware UTC ``datetime``: PostgreSQL returns
    ``timestamptz`` as aware datetimes, SQLite returns Airflow's naive UTC timestamps as text."""
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


def e2e_database() -> str:
    """The database the e2e tests run their stacks on: ``$E2E_DATABASE``, PostgreSQL by default.

    ``E2E_DATABASE=sqlite`` runs them on SQLite instead (no PostgreSQL needed; docs/testing-postgres.md).
    """
    value = os.environ.get(E2E_DATABASE_ENV, "").strip().lower() or "postgres"
    value = {"postgresql": "postgres", "pg": "postgres"}.get(value, value)
    if value not in DATABASES:
        raise ValueError(f"{E2E_DATABASE_ENV}={value!r}: expected one of {', '.join(DATABASES)}")
    return value


# Stacks that were started and not stopped yet; stopped at interpreter exit as a safety net for code
# paths that bypass the context manager (e.g. an uncaught exception in a fixture's setup code).
_LIVE_STACKS: weakref.WeakSet[AirflowStack] = weakref.WeakSet()


@atexit.register
def _stop_live_stacks() -> None:
    for stack in list(_LIVE_STACKS):
        with contextlib.suppress(Exception):
            stack.stop()


def _die_with_parent() -> None:
    """``preexec_fn``: have the kernel SIGTERM the component when the test process dies (Linux only).

    Why: components run in their own sessions, so a SIGKILLed pytest (CI job cancelled, OOM) would
    otherwise leave a whole Airflow running.  SIGTERM (not SIGKILL) lets each component shut down its
    own children.  Best effort: silently does nothing where ``prctl`` is unavailable.
    """
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 == PR_SET_PDEATHSIG


@dataclasses.dataclass(frozen=True)
class StackPorts:
    """The ports a stack listens on: the api-server's and the worker's and triggerer's log servers."""

    api: int
    worker_logs: int
    trigger_logs: int


class AirflowStackError(AssertionError):
    """A stack operation failed or timed out; the message carries the component log tails.

    Subclasses ``AssertionError`` so pytest shows it as a test failure, not as an error in the harness.
    """


class AirflowApiUnavailable(AirflowStackError):
    """The api-server answered 5xx (typically SQLite's "database is locked" while the scheduler writes,
    which a loaded 2-core machine makes frequent): a "not yet" for :meth:`AirflowStack.wait_until`."""


def _airflow_argv() -> list[str]:
    """Command prefix that runs the ``airflow`` CLI of *this* interpreter's environment.

    Using the venv of ``sys.executable`` (rather than whatever ``airflow`` is on ``PATH``) makes the
    harness work from any venv, including ones that are not activated.
    """
    script = Path(sys.executable).parent / "airflow"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "airflow"]


def _proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """Return ``(state, ppid, pgrp, session)`` of ``pid`` from ``/proc`` or ``None`` if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; everything after the last ")" is
    # space separated and well-formed.
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest[0], int(rest[1]), int(rest[2]), int(rest[3])


def _is_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (a zombie cannot be killed and holds no resources)."""
    stat = _proc_stat(pid)
    if stat is not None:
        return stat[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _session_members(leader_pid: int) -> list[int]:
    """Every live process of the session led by ``leader_pid`` (the leader included if still alive).

    Why sessions rather than process groups: the Task SDK supervisor puts each task process in a
    *new process group* (so it can ``killpg`` the task's own children), which means ``killpg`` on the
    scheduler's group would miss running tasks.  ``setpgid`` cannot leave the session, so the session id
    catches the whole tree (scheduler -> LocalExecutor workers -> task supervisors -> tasks, triggerer ->
    trigger runner, api-server -> uvicorn workers, serve-logs servers ...).  Falls back to psutil's
    recursive children where ``/proc`` does not exist.
    """
    members: set[int] = set()
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[3] == leader_pid and stat[0] not in ("Z", "X"):
                members.add(int(entry.name))
    else:  # pragma: no cover - non-Linux developer machines
        import psutil

        with contextlib.suppress(psutil.Error):
            leader = psutil.Process(leader_pid)
            members.add(leader_pid)
            members.update(child.pid for child in leader.children(recursive=True))
    return sorted(members)


def _signal_pids(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each pid, ignoring ones that disappeared in the meantime."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _tail(path: Path, lines: int) -> str:
    """Last ``lines`` lines of a text file (whole file is fine: component logs stay small in tests)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Component:
    """One started Airflow CLI process (``airflow scheduler`` etc.) and where its output goes."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    started_at: float
    env_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        """Pid of the CLI process; it is also the session id and process-group id of its whole tree."""
        return self.popen.pid

    def is_running(self) -> bool:
        """Whether the CLI process itself is still running (its children are not considered)."""
        return self.popen.poll() is None

    def tree_pids(self) -> list[int]:
        """All live processes started (directly or indirectly) by this component."""
        return _session_members(self.pid)


def _never_reuse_trigger_ids(db_path: Path) -> None:
    """Give SQLite's ``trigger`` table AUTOINCREMENT, so a deleted trigger's id is never handed out again.

    Why: Airflow's ``trigger.id`` is a plain ``INTEGER PRIMARY KEY``; on SQLite a new row takes
    ``max(id) + 1``, so when the newest trigger fires and is deleted, the next deferral gets the *same*
    id. A triggerer that still lists the finished trigger under that id treats the new one as already
    running and never starts it — the task stays deferred forever (seen here: a mark-failed test whose
    trigger never ran). PostgreSQL and MySQL sequences never reuse ids, so production is not affected;
    the table is rebuilt here, while the freshly migrated DB is still empty.
    """
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        (ddl,) = db.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='trigger'").fetchone()
        if "AUTOINCREMENT" in ddl.upper():
            return
        new_ddl = (
            ddl.replace('"trigger"', "trigger_autoinc", 1)
            .replace("id INTEGER NOT NULL,", "id INTEGER PRIMARY KEY AUTOINCREMENT,", 1)
            .replace("CONSTRAINT trigger_pkey PRIMARY KEY (id), ", "", 1)
        )
        indexes = [row[0] for row in db.execute(
            "SELECT sql FROM sqlite_master WHERE type='index' AND tbl_name='trigger' AND sql IS NOT NULL"
        )]
        db.executescript(
            "PRAGMA foreign_keys=OFF;\n"
            f"{new_ddl};\n"
            "INSERT INTO trigger_autoinc SELECT * FROM trigger;\n"
            "DROP TABLE trigger;\n"
            "ALTER TABLE trigger_autoinc RENAME TO trigger;\n"
            + "".join(f"{sql};\n" for sql in indexes)
        )
        db.commit()


class AirflowStack:
    """A throw-away Airflow 3 deployment for end-to-end tests; use it as a context manager.

    Example::

        with AirflowStack(dags_folder, parallelism=2, base_tmp_dir=tmp_path) as stack:
            stack.wait_for_dag("my_dag")
            stack.unpause("my_dag")
            stack.trigger_dag("my_dag", run_id="r1", conf={"x": 1})
            assert stack.wait_for_dag_run("my_dag", "r1") == "success"

    :param dags_folder: folder with the DAG files (``[core] dags_folder``).
    :param parallelism: LocalExecutor worker slots (``[core] parallelism``).
    :param base_tmp_dir: the stack creates ``AIRFLOW_HOME``, DB and component logs below this folder.
    :param extra_env: extra environment for *every* component, e.g. ``AIRFLOW_CONN_*`` connections,
        ``PYTHONPATH`` with trigger modules, or ``AIRFLOW__SECTION__KEY`` overrides of the defaults.
    :param startup_timeout: seconds to wait for the api-server and component heartbeats.
    :param components: which components :meth:`start` launches.
    :param reuse_migrated_db: copy a DB migrated earlier in this process instead of migrating again.
    :param dags_paused: ``[core] dags_are_paused_at_creation``; ``False`` saves the :meth:`unpause` calls.
    :param ports: fixed ports for the api-server and the log servers (``./dev stack``); free ones if omitted.
    :param database: the metadata database: ``"sqlite"`` (a file in ``AIRFLOW_HOME``; the default, for
        the demo and developer stacks) or ``"postgres"`` (a database of its own on the session's
        throw-away PostgreSQL server, :func:`tests.servers.postgres.shared_server`; what the e2e tests
        use, see :func:`e2e_database`).
    """

    def __init__(
        self,
        dags_folder: str | os.PathLike[str],
        *,
        parallelism: int = 4,
        base_tmp_dir: str | os.PathLike[str],
        extra_env: Mapping[str, str] | None = None,
        startup_timeout: float = 120.0,
        components: Sequence[str] = DEFAULT_COMPONENTS,
        reuse_migrated_db: bool = True,
        dags_paused: bool = True,
        database: str = "sqlite",
        ports: StackPorts | None = None,
    ) -> None:
        if database not in DATABASES:
            raise ValueError(f"database={database!r}: expected one of {', '.join(DATABASES)}")
        self.dags_folder = Path(dags_folder).resolve()
        self.parallelism = parallelism
        self.root = Path(base_tmp_dir).resolve()
        self.home = self.root / "airflow_home"
        self.component_log_dir = self.root / "component_logs"
        self.database = database
        #: the SQLite file (SQLite stacks only)
        self.db_path = self.home / "airflow.db"
        #: the PostgreSQL server and this stack's database on it (PostgreSQL stacks only)
        self.pg: postgres.PostgresServer | None = None
        self.db_name: str | None = None
        if database == "postgres":
            self.pg = postgres.shared_server()
            self.db_name = f"airflow_stack_{os.getpid()}_{next(_PG_DB_NUMBERS)}"
        self.extra_env = dict(extra_env or {})
        self.startup_timeout = startup_timeout
        self.component_names = tuple(components)
        self.reuse_migrated_db = reuse_migrated_db
        self.dags_paused = dags_paused

        ports = ports or StackPorts(api=free_port(), worker_logs=free_port(), trigger_logs=free_port())
        self.api_port = ports.api
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.worker_log_port = ports.worker_logs
        self.trigger_log_port = ports.trigger_logs

        #: Running (or exited but not yet reaped) components, by name.
        self.components: dict[str, Component] = {}
        #: Every component ever started (restarts included), so stop() can also sweep their trees.
        self._all_started: list[Component] = []
        self._launch_counts: dict[str, int] = {}
        #: Wall-clock durations in seconds of start-up phases and of anything wrapped in :meth:`timed`.
        self.timings: dict[str, float] = {}
        self.env: dict[str, str] = self._build_env()
        self._client: httpx.Client | None = None
        self._token: str | None = None
        #: Tasks whose trigger never started until :meth:`wait_for_trigger_to_run` restarted the triggerer.
        self.triggerer_restarts: list[str] = []
        #: ``time.monotonic()`` when :meth:`start` began (to measure e.g. time to first task).
        self.started_at: float | None = None

    # ------------------------------------------------------------------ configuration

    @property
    def sql_alchemy_conn(self) -> str:
        """``[database] sql_alchemy_conn`` of every component."""
        if self.pg is not None:
            return str(self.pg.url(self.db_name))
        return f"sqlite:///{self.db_path}"

    def _build_env(self) -> dict[str, str]:
        """Environment shared by every component; all Airflow configuration is done here.

        Why env vars and not ``airflow.cfg``: env vars win over the file, are visible in one place and
        are inherited by every child (LocalExecutor workers, trigger runner, parsing processes).
        """
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in _STRIPPED_ENV_NAMES and not key.startswith(_STRIPPED_ENV_PREFIXES)
        }
        # Tasks and the triggerer reach the api-server over loopback; a CI proxy must not intercept that.
        no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
        env["NO_PROXY"] = env["no_proxy"] = no_proxy
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        env["AIRFLOW_HOME"] = str(self.home)
        env["AIRFLOW_CONFIG"] = str(self.home / "airflow.cfg")

        settings: dict[str, object] = {
            # --- core / executor
            "CORE__DAGS_FOLDER": self.dags_folder,
            "CORE__EXECUTOR": "LocalExecutor",
            "CORE__PARALLELISM": self.parallelism,
            "CORE__LOAD_EXAMPLES": False,
            "CORE__DAGS_ARE_PAUSED_AT_CREATION": self.dags_paused,
            "CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": True,
            "CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": self.home / "simple_auth_manager_passwords.json",
            "DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
            # --- api-server; secrets must be identical in all processes (JWTs for workers and users)
            "API__HOST": "127.0.0.1",
            "API__PORT": self.api_port,
            "API__BASE_URL": self.api_url,
            "API__WORKERS": 1,
            "API__EXPOSE_STACKTRACE": True,
            # Airflow 3.0 answers the xcom_value() read (deserialize=true) with 400 unless this is on
            "API__ENABLE_XCOM_DESERIALIZE_SUPPORT": True,
            "API__SECRET_KEY": base64.b64encode(os.urandom(16)).decode(),
            "API_AUTH__JWT_SECRET": base64.b64encode(os.urandom(16)).decode(),
            # --- scheduler: short loops so a test does not wait for housekeeping
            "SCHEDULER__SCHEDULER_HEARTBEAT_SEC": 1,
            "SCHEDULER__JOB_HEARTBEAT_SEC": 2,
            "SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": 0.5,
            "SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": 5,
            "SCHEDULER__ENABLE_HEALTH_CHECK": False,
            # --- task supervisor: it polls its task process at this interval, so a finished task can hold
            # its executor slot for up to 5 s (default) before the slot is free again; 1 s keeps tests fast.
            "WORKERS__MIN_HEARTBEAT_INTERVAL": 1,
            # --- dag processor: pick up new files quickly, one parsing process is plenty for tests
            "DAG_PROCESSOR__REFRESH_INTERVAL": 3,
            "DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": 10,
            "DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": 2,
            "DAG_PROCESSOR__PARSING_PROCESSES": 1,
            "DAG_PROCESSOR__PRINT_STATS_INTERVAL": 300,
            # --- triggerer: a killed triggerer's triggers are re-assigned once its heartbeat is older
            # than the threshold, so keep both small (threshold must stay well above the heartbeat).
            "TRIGGERER__JOB_HEARTBEAT_SEC": 1,
            "TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": 10,
            # Airflow's default: the core's on_kill (state look-up + cancel) is budgeted to fit it.
            "TRIGGERER__ON_KILL_TIMEOUT": 30,
            # --- logging: plain text, own ports so parallel stacks / a dev Airflow do not collide
            "LOGGING__COLORED_CONSOLE_LOG": False,
            "LOGGING__BASE_LOG_FOLDER": self.home / "logs",
            "LOGGING__WORKER_LOG_SERVER_PORT": self.worker_log_port,
            "LOGGING__TRIGGER_LOG_SERVER_PORT": self.trigger_log_port,
        }
        for key, value in settings.items():
            env[f"AIRFLOW__{key}"] = str(value)
        env.update(self.extra_env)
        return env

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> AirflowStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Record the wall-clock duration of the ``with`` block in :attr:`timings` under ``name``."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = round(time.monotonic() - start, 2)

    def start(self) -> None:
        """Prepare ``AIRFLOW_HOME`` and the DB, launch all components and wait until they heartbeat."""
        t0 = self.started_at = time.monotonic()
        with self.timed("startup.prepare_home_and_db"):
            self._prepare_home()
        with self.timed("startup.spawn_components"):
            for name in self.component_names:
                self.start_component(name)
        with self.timed("startup.api_server_ready"):
            self._wait_for_api()
        with self.timed("startup.components_healthy"):
            self.wait_healthy()
        self.timings["startup.total"] = round(time.monotonic() - t0, 2)

    def _prepare_home(self) -> None:
        """Create ``AIRFLOW_HOME`` with an empty config file and a migrated DB (SQLite or PostgreSQL).

        The empty ``airflow.cfg`` matters: without it, the four components started at once would all
        try to generate one (with different random secrets) and could read each other's half-written
        file.
        """
        global _DB_TEMPLATE
        self.home.mkdir(parents=True, exist_ok=True)
        self.component_log_dir.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        (self.home / "airflow.cfg").write_text(
            "# Intentionally empty: airflow_stack.py configures Airflow via AIRFLOW__* env vars.\n"
            "# Source env.sh in this folder to run the airflow CLI against this stack.\n"
        )
        (self.home / "env.sh").write_text(
            "".join(
                f"export {key}={json.dumps(value)}\n"
                for key, value in sorted(self.env.items())
                if key.startswith("AIRFLOW") or key in ("PYTHONPATH", "PATH")
            )
        )
        if self.pg is not None:
            self._prepare_postgres()
            return
        if self.reuse_migrated_db and _DB_TEMPLATE is not None and _DB_TEMPLATE.is_file():
            self._copy_sqlite(_DB_TEMPLATE, self.db_path)
            self.timings["startup.db_migrate"] = 0.0
            return
        self._migrate()
        _never_reuse_trigger_ids(self.db_path)
        if self.reuse_migrated_db:
            template_dir = Path(tempfile.mkdtemp(prefix="airflow-stack-db-template-"))
            atexit.register(shutil.rmtree, template_dir, ignore_errors=True)
            template = template_dir / "airflow.db"
            self._copy_sqlite(self.db_path, template)
            _DB_TEMPLATE = template

    def _migrate(self, sql_alchemy_conn: str | None = None) -> None:
        """``airflow db migrate`` (of this stack's DB, or of the one ``sql_alchemy_conn`` names)."""
        env = None if sql_alchemy_conn is None else {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn}
        with self.timed("startup.db_migrate"):
            result = self.airflow_cli("db", "migrate", timeout=300, env=env)
        if result.returncode != 0:
            raise AirflowStackError(
                f"airflow db migrate failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )

    def _prepare_postgres(self) -> None:
        """Create this stack's database on the session's PostgreSQL server, migrated.

        The first stack of a session migrates a *template* database, never used by any stack, and
        every stack (that one included) gets ``CREATE DATABASE ... TEMPLATE`` of it: a copy costs a
        fraction of a second, a migration ~10 s. PostgreSQL's sequences never hand out an id twice,
        so the trigger table stays as Airflow made it (compare :func:`_never_reuse_trigger_ids`).
        """
        global _PG_TEMPLATE
        assert self.db_name is not None
        template = _PG_TEMPLATE[1] if _PG_TEMPLATE is not None and _PG_TEMPLATE[0] is self.pg else None
        if self.reuse_migrated_db and template is not None:
            self.pg.create_database(self.db_name, template=template)
            self.timings["startup.db_migrate"] = 0.0
            return
        if not self.reuse_migrated_db:
            self.pg.create_database(self.db_name)
            self._migrate()
            return
        template = f"airflow_template_{os.getpid()}"
        self.pg.drop_database(template)  # a template left by a migration that failed half-way
        self.pg.create_database(template)
        self._migrate(self.pg.url(template))
        self.pg.create_database(self.db_name, template=template)
        _PG_TEMPLATE = (self.pg, template)

    def _drop_postgres_db(self) -> None:
        """Drop this stack's PostgreSQL database (every component is stopped by then)."""
        if self.pg is not None and self.db_name is not None and self.pg.is_running():
            with contextlib.suppress(Exception):
                self.pg.drop_database(self.db_name)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of a read-only SQL query on the stack's metadata DB, on SQLite and PostgreSQL alike.

        ``?`` marks a parameter in both. A reader never blocks Airflow: SQLite runs in WAL mode, and
        a PostgreSQL read takes no locks a writer waits for. Timestamps come back as ``datetime`` on
        PostgreSQL and as text on SQLite (:func:`as_utc` reads both).
        """
        if self.pg is not None:
            with self.pg.read_only(self.db_name) as cur:
                cur.execute(sql.replace("%", "%%").replace("?", "%s"), params)
                return list(cur.fetchall())
        with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)) as db:
            return list(db.execute(sql, params).fetchall())

    @staticmethod
    def _copy_sqlite(src: Path, dst: Path) -> None:
        """Copy a SQLite DB consistently (Airflow uses WAL mode, so a plain file copy could miss data)."""
        with (
            contextlib.closing(sqlite3.connect(src)) as source,
            contextlib.closing(sqlite3.connect(dst)) as dest,
        ):
            source.backup(dest)

    def start_component(self, name: str, *extra_args: str, env: Mapping[str, str] | None = None) -> Component:
        """Start ``airflow <command>`` in a new session, output to ``component_logs/<name>.<n>.log``.

        ``name`` is the CLI command (``scheduler``, ``triggerer``, ``dag-processor``, ``api-server``),
        optionally followed by ``-<suffix>`` to run one more instance, e.g. ``"triggerer-b"``.

        :param extra_args: extra CLI arguments.
        :param env: per-component environment overrides on top of :attr:`env`.
        """
        existing = self.components.get(name)
        if existing is not None and existing.is_running():
            raise AirflowStackError(f"component {name!r} is already running (pid {existing.pid})")
        command = self._command_for(name)
        args = list(extra_args)
        if command == "api-server":
            args = ["--host", "127.0.0.1", "--port", str(self.api_port), *args]
        count = self._launch_counts.get(name, 0) + 1
        self._launch_counts[name] = count
        log_path = self.component_log_dir / f"{name}.{count}.log"
        argv = [*_airflow_argv(), command, *args]
        proc_env = {**self.env, **(env or {})}
        with open(log_path, "ab") as log_file:
            log_file.write(f"### {time.strftime('%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            log_file.flush()
            popen = subprocess.Popen(
                argv,
                env=proc_env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        component = Component(
            name=name,
            argv=argv,
            popen=popen,
            log_path=log_path,
            started_at=time.monotonic(),
            env_overrides=dict(env or {}),
        )
        self.components[name] = component
        self._all_started.append(component)
        _LIVE_STACKS.add(self)
        return component

    @staticmethod
    def _command_for(name: str) -> str:
        """Map a component name (``"triggerer"``, ``"triggerer-b"``) to the airflow CLI command."""
        for command in ("api-server", "dag-processor", "scheduler", "triggerer"):
            if name == command or name.startswith(command + "-"):
                return command
        raise ValueError(f"unknown component {name!r}")

    def signal_component(self, name: str, sig: int) -> list[int]:
        """Send ``sig`` to every process of component ``name`` (e.g. SIGSTOP/SIGCONT); return the pids."""
        pids = self.components[name].tree_pids()
        _signal_pids(pids, sig)
        return pids

    def stop_component(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15.0) -> list[int]:
        """Stop one component and its whole process tree; return the pids that were signalled.

        SIGTERM/SIGINT go to the CLI process only (it shuts its children down itself); any other
        signal (SIGKILL, ...) goes to every process of the tree at once.  Whatever is still alive after
        ``timeout`` seconds is SIGKILLed.
        """
        component = self.components.pop(name, None)
        if component is None:
            return []
        return self._terminate([component], sig=sig, timeout=timeout)

    def kill_triggerer(
        self, sig: int = signal.SIGKILL, name: str = "triggerer", timeout: float = 15.0
    ) -> list[int]:
        """Simulate a triggerer crash: signal the triggerer *and* its trigger-runner subprocess.

        With the default SIGKILL nothing in the triggerer gets a chance to run (no ``on_kill``, no
        ``cleanup``, the Job row is left "running" with a stale heartbeat), which is what a node loss
        or OOM kill looks like.  Returns the pids that were killed; all are gone when this returns.
        """
        return self.stop_component(name, sig=sig, timeout=timeout)

    def start_triggerer(
        self, name: str = "triggerer", *extra_args: str, env: Mapping[str, str] | None = None
    ) -> Component:
        """(Re)start a triggerer.

        An additional triggerer (any name but the default) gets its own log-server port so it can run
        next to the first one.
        """
        overrides = dict(env or {})
        if name != "triggerer":
            overrides.setdefault("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", str(free_port()))
        return self.start_component(name, *extra_args, env=overrides)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every component and everything they spawned; safe to call more than once.

        SIGTERM all at once (graceful shutdowns run in parallel), wait up to ``timeout`` seconds, SIGKILL
        all leftovers, then sweep the sessions of every component ever started (restarted triggerers
        included) so not even an orphaned task process survives.  The timeout is short on purpose: the
        triggerer alone waits up to 10 s for its trigger runner after SIGINT, which buys nothing for a
        throw-away stack.
        """
        with self.timed("stop"):
            components = list(self.components.values())
            self.components.clear()
            self._terminate(components, sig=signal.SIGTERM, timeout=timeout)
            self._terminate(self._all_started, sig=signal.SIGKILL, timeout=5.0)
            if self._client is not None:
                self._client.close()
                self._client = None
            self._drop_postgres_db()
            _LIVE_STACKS.discard(self)

    def _terminate(self, components: Sequence[Component], *, sig: int, timeout: float) -> list[int]:
        """Signal the trees of ``components`` with ``sig``, escalate to SIGKILL after ``timeout``."""
        signalled: set[int] = set()
        for component in components:
            pids = component.tree_pids()
            signalled.update(pids)
            if sig in (signal.SIGTERM, signal.SIGINT):
                # Graceful: only the CLI process, exactly like systemd/Kubernetes would do.  Airflow
                # components forward the shutdown to their children themselves; signalling the
                # children too makes e.g. the triggerer see a "second exit signal" and SIGKILL its
                # trigger runner after a 5 s wait.
                _signal_pids([component.pid], sig)
            else:
                _signal_pids(pids, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for component in components:
                component.popen.poll()  # reap the leader so it does not linger as a zombie
            if not any(component.tree_pids() for component in components):
                break
            time.sleep(0.1)
        for component in components:
            leftovers = component.tree_pids()
            signalled.update(leftovers)
            _signal_pids(leftovers, signal.SIGKILL)
        for component in components:
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.popen.wait(timeout=5)
        still_alive = [pid for pid in signalled if _is_alive(pid)]
        if still_alive:  # pragma: no cover - only if the kernel is slow to deliver SIGKILL
            time.sleep(0.5)
            _signal_pids(still_alive, signal.SIGKILL)
        return sorted(signalled)

    def all_pids(self) -> list[int]:
        """Every live process belonging to this stack (for leak checks in tests)."""
        pids: set[int] = set()
        for component in self._all_started:
            pids.update(component.tree_pids())
        return sorted(pids)

    # ------------------------------------------------------------------ diagnostics

    def dump_logs(self, lines: int = 60) -> str:
        """Tails of every component log (restarts included), for failure messages."""
        parts = []
        for log_path in sorted(self.component_log_dir.glob("*.log")):
            parts.append(f"===== {log_path.name} (last {lines} lines) =====\n{_tail(log_path, lines)}")
        return "\n".join(parts)

    def component_logs(self, name: str) -> list[Path]:
        """The output files of component ``name`` (``triggerer`` does not match ``triggerer-b``)."""
        return sorted(self.component_log_dir.glob(f"{name}.*.log"))

    def fail(self, message: str, lines: int = 60) -> AirflowStackError:
        """Build an :class:`AirflowStackError` carrying ``message`` plus the component log tails."""
        return AirflowStackError(f"{message}\n\n{self.dump_logs(lines)}")

    def airflow_cli(
        self, *args: str, timeout: float = 120.0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a one-off ``airflow`` CLI command against this stack (costs ~3 s of imports per call).

        :param env: overrides of :attr:`env` for this command.
        """
        return subprocess.run(
            [*_airflow_argv(), *args],
            env={**self.env, **(env or {})},
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def _check_components_alive(self) -> None:
        """Fail fast (instead of timing out) when a component process died."""
        for component in self.components.values():
            code = component.popen.poll()
            if code is not None:
                raise self.fail(f"component {component.name!r} exited with code {code}", lines=120)

    def wait_until(
        self,
        predicate: Callable[[], T | None],
        *,
        timeout: float,
        interval: float = 0.5,
        description: str = "condition",
        check_components: bool = True,
    ) -> T:
        """Poll ``predicate`` until it returns something truthy and return that value.

        Transient HTTP errors count as "not yet" (the api-server may be busy writing to SQLite).
        On timeout an :class:`AirflowStackError` with the last result and the component logs is raised.
        """
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                value = predicate()
            except (httpx.TransportError, httpx.HTTPStatusError, AirflowApiUnavailable) as exc:
                value, last = None, exc
            else:
                if value:
                    return value
                last = value
            if check_components:
                self._check_components_alive()
            if time.monotonic() >= deadline:
                raise self.fail(f"timed out after {timeout:.0f}s waiting for {description}; last: {last!r}")
            time.sleep(interval)

    # ------------------------------------------------------------------ REST API plumbing

    def _wait_for_api(self) -> None:
        """Wait until the api-server answers and a JWT can be obtained."""

        def token() -> str | None:
            resp = httpx.get(f"{self.api_url}/auth/token", timeout=5, trust_env=False)
            if resp.status_code in (200, 201):
                return str(resp.json()["access_token"])
            return None

        self._token = self.wait_until(
            token, timeout=self.startup_timeout, description="api-server /auth/token"
        )

    @property
    def client(self) -> httpx.Client:
        """HTTP client for the api-server with a SimpleAuthManager JWT.

        ``GET /auth/token`` hands out an admin token without credentials because
        ``simple_auth_manager_all_admins`` is on (``POST /auth/token`` with username/password is the
        way when it is off).  ``trust_env=False`` keeps CI proxy settings away from loopback.
        """
        if self._client is None:
            if self._token is None:
                self._wait_for_api()
            self._client = httpx.Client(
                base_url=self.api_url,
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=30.0,
                trust_env=False,
            )
        return self._client

    def api(self, method: str, path: str, *, expected: Iterable[int] = (200,), **kwargs: Any) -> Any:
        """Call the REST API (``path`` relative to the server root) and return the decoded JSON body.

        Raises :class:`AirflowStackError` (with the response body) for unexpected status codes.
        Reads (``GET``) are retried for up to :data:`API_READ_RETRY_SECONDS` on 5xx answers and transport
        errors — under load SQLite makes the api-server answer "database is locked" now and then; a
        write is never retried (it may have been applied), its 5xx raises :class:`AirflowApiUnavailable`.
        """
        give_up = time.monotonic() + (API_READ_RETRY_SECONDS if method.upper() == "GET" else 0.0)
        delay = 0.25
        while True:
            try:
                resp = self.client.request(method, path, **kwargs)
            except httpx.TransportError:
                if time.monotonic() >= give_up:
                    raise
            else:
                if resp.status_code < 500 or resp.status_code in set(expected) or time.monotonic() >= give_up:
                    break
            time.sleep(delay)
            delay = min(2 * delay, 2.0)
        if resp.status_code not in set(expected):
            error = AirflowApiUnavailable if resp.status_code >= 500 else AirflowStackError
            raise error(f"{method} {path} -> {resp.status_code}: {resp.text[:2000]}")
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    @staticmethod
    def _q(value: str) -> str:
        """URL-quote a path segment (run ids contain ``:`` and ``+``)."""
        return quote(value, safe="")

    def _ti_path(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
        path = f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}/taskInstances/{self._q(task_id)}"
        return path if map_index < 0 else f"{path}/{map_index}"

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        """``GET /api/v2/monitor/health`` (metadatabase, scheduler, triggerer, dag_processor)."""
        return dict(self.api("GET", "/api/v2/monitor/health"))

    def wait_healthy(
        self,
        components: Sequence[str] = ("scheduler", "triggerer", "dag_processor"),
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Wait until the given components report a recent heartbeat in the health endpoint."""

        def healthy() -> dict[str, Any] | None:
            info = self.health()
            ok = all((info.get(name) or {}).get("status") == "healthy" for name in components)
            return info if ok else None

        return self.wait_until(
            healthy, timeout=timeout or self.startup_timeout, description=f"healthy {', '.join(components)}"
        )

    # ------------------------------------------------------------------ DAGs and DAG runs

    def import_errors(self) -> list[dict[str, Any]]:
        """DAG import errors recorded by the dag-processor."""
        return list(self.api("GET", "/api/v2/importErrors")["import_errors"])

    def get_dag(self, dag_id: str) -> dict[str, Any] | None:
        """``GET /api/v2/dags/{dag_id}``, ``None`` while the DAG is not parsed yet."""
        resp = self.client.get(f"/api/v2/dags/{self._q(dag_id)}")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return dict(resp.json())

    def wait_for_dag(
        self, dag_id: str, timeout: float = 90.0, fail_on_import_error: bool = True
    ) -> dict[str, Any]:
        """Wait until the dag-processor has parsed and serialized ``dag_id``.

        With ``fail_on_import_error`` any DAG import error aborts the wait at once (a broken test DAG
        file would otherwise only show up as a timeout).
        """

        def parsed() -> dict[str, Any] | None:
            dag = self.get_dag(dag_id)
            if dag is None and fail_on_import_error and (errors := self.import_errors()):
                details = "\n".join(f"{e['filename']}:\n{e['stack_trace']}" for e in errors)
                raise AirflowStackError(f"DAG import errors while waiting for {dag_id}:\n{details}")
            return dag

        try:
            return self.wait_until(parsed, timeout=timeout, description=f"DAG {dag_id}")
        except AirflowStackError as exc:
            if "DAG import errors" in str(exc):
                raise
            raise AirflowStackError(f"{exc}\n\nimport errors: {self.import_errors()}") from None

    def unpause(self, dag_id: str) -> None:
        """Unpause ``dag_id`` (DAGs start paused: ``dags_are_paused_at_creation``)."""
        self.api("PATCH", f"/api/v2/dags/{self._q(dag_id)}", json={"is_paused": False})

    def trigger_dag(
        self,
        dag_id: str,
        *,
        run_id: str | None = None,
        conf: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a manual dag run (``logical_date`` None, as Airflow 3 does for manual runs)."""
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id is not None:
            body["dag_run_id"] = run_id
        return dict(self.api("POST", f"/api/v2/dags/{self._q(dag_id)}/dagRuns", json=body))

    def get_dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}``."""
        return dict(self.api("GET", f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}"))

    def dag_run_state(self, dag_id: str, run_id: str) -> str:
        """State of a dag run (``queued``, ``running``, ``success``, ``failed``)."""
        return str(self.get_dag_run(dag_id, run_id)["state"])

    def wait_for_dag_run(
        self,
        dag_id: str,
        run_id: str,
        *,
        timeout: float = 120.0,
        states: Iterable[str] = TERMINAL_DAG_RUN_STATES,
    ) -> str:
        """Wait until the dag run is in one of ``states`` (default: terminal) and return that state."""
        wanted = set(states)

        def done() -> str | None:
            state = self.dag_run_state(dag_id, run_id)
            return state if state in wanted else None

        try:
            return self.wait_until(
                done, timeout=timeout, description=f"dag run {dag_id}/{run_id} in {wanted}"
            )
        except AirflowStackError as exc:
            tis = [(t["task_id"], t["map_index"], t["state"]) for t in self.task_instances(dag_id, run_id)]
            raise AirflowStackError(f"task instances: {tis}\n{exc}") from None

    # ------------------------------------------------------------------ task instances

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """All task instances of a run (``task_id``, ``map_index``, ``state``, ``try_number`` ...)."""
        path = f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}/taskInstances"
        return list(self.api("GET", path, params={"limit": 100})["task_instances"])

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """One task instance as returned by the REST API."""
        return dict(self.api("GET", self._ti_path(dag_id, run_id, task_id, map_index)))

    def task_state(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str | None:
        """State of one task instance (``None`` before the scheduler touched it)."""
        state = self.task_instance(dag_id, run_id, task_id, map_index)["state"]
        return None if state is None else str(state)

    def wait_for_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: str | Iterable[str],
        *,
        map_index: int = -1,
        timeout: float = 90.0,
        fail_on: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Wait until a task instance is in one of ``states`` (e.g. ``"deferred"``); return the TI.

        ``fail_on`` states abort the wait immediately (e.g. waiting for ``deferred`` but the task
        already ``failed``), which turns a would-be timeout into a fast, readable failure.
        """
        wanted = {states} if isinstance(states, str) else set(states)
        bad = set(fail_on)

        def reached() -> dict[str, Any] | None:
            ti = self.task_instance(dag_id, run_id, task_id, map_index)
            if ti["state"] in bad:
                raise self.fail(f"{dag_id}/{run_id}/{task_id}[{map_index}] went to {ti['state']!r}")
            return ti if ti["state"] in wanted else None

        return self.wait_until(
            reached, timeout=timeout, description=f"{dag_id}/{run_id}/{task_id}[{map_index}] in {wanted}"
        )

    def wait_for_trigger_to_run(
        self, dag_id: str, run_id: str, task_id: str, marker: str, *, timeout: float = 45.0
    ) -> None:
        """Wait until the task's trigger runs in a triggerer, i.e. ``marker`` shows in the task log.

        A test that acts on a deferred task (mark failed) must first know that a triggerer runs its
        trigger: Airflow only calls ``on_kill`` on a running trigger. With Airflow 3.3.2 on SQLite a
        trigger created right after a batch of others finished was seen, under load, never to be
        started by the live triggerer (docs/development.md). Then, on SQLite, the triggerer is
        restarted once — a fresh one picks the trigger up — and the wait starts again (recorded in
        :attr:`triggerer_restarts`). On PostgreSQL, whose ids are never reused, no restart: the
        trigger must start within the same overall time.
        """

        def running() -> bool:
            return marker in self.task_log(dag_id, run_id, task_id)

        if self.database != "sqlite":
            self.wait_until(running, timeout=3 * timeout, description=f"trigger of {task_id} running")
            return
        try:
            self.wait_until(running, timeout=timeout, description=f"trigger of {task_id} running")
            return
        except AirflowStackError:
            pass
        self.triggerer_restarts.append(f"{dag_id}/{run_id}/{task_id}")
        print(f"airflow_stack: the trigger of {dag_id}/{run_id}/{task_id} did not start within {timeout:.0f}s; "
              "restarting the triggerer (SQLite)", file=sys.stderr, flush=True)
        self.stop_component("triggerer")
        self.start_triggerer()
        self.wait_until(running, timeout=2 * timeout, description=f"trigger of {task_id} running after restart")

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
        """A task's XCom value through the REST API, decoded from JSON where it is JSON text."""
        path = f"{self._ti_path(dag_id, run_id, task_id)}/xcomEntries/{self._q(key)}"
        value = self.api("GET", path, params={"deserialize": True})["value"]
        return json.loads(value) if isinstance(value, str) and value[:1] in "[{\"" else value

    def set_task_state(
        self, dag_id: str, run_id: str, task_id: str, new_state: str, *, map_index: int = -1
    ) -> list[dict[str, Any]]:
        """``PATCH`` a task instance to ``new_state`` (what "mark failed/success" in the UI does)."""
        resp = self.api(
            "PATCH", self._ti_path(dag_id, run_id, task_id, map_index), json={"new_state": new_state}
        )
        return list(resp["task_instances"])

    def mark_task_failed(
        self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1
    ) -> list[dict[str, Any]]:
        """Mark a task instance failed via the REST API (same as the UI's "Mark as failed")."""
        return self.set_task_state(dag_id, run_id, task_id, "failed", map_index=map_index)

    def clear_task(
        self,
        dag_id: str,
        run_id: str,
        task_ids: Sequence[str | tuple[str, int]],
        *,
        only_failed: bool = False,
        reset_dag_runs: bool = True,
    ) -> list[dict[str, Any]]:
        """Clear task instances of one run so the scheduler runs them again (new try_number)."""
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": [list(t) if isinstance(t, tuple) else t for t in task_ids],
            "only_failed": only_failed,
            "reset_dag_runs": reset_dag_runs,
        }
        resp = self.api("POST", f"/api/v2/dags/{self._q(dag_id)}/clearTaskInstances", json=body)
        return list(resp["task_instances"])

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, *, map_index: int = -1
    ) -> str:
        """Text of a task attempt's log (worker and triggerer parts) via the REST API.

        The endpoint returns structured records; they are flattened to ``"<level> <event> k=v"`` lines
        so tests can simply search the text.
        """
        path = f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}/taskInstances/{self._q(task_id)}"
        data = self.api(
            "GET",
            f"{path}/logs/{try_number}",
            params={"map_index": map_index, "full_content": True},
            headers={"Accept": "application/json"},
        )
        lines = []
        for record in data.get("content", []):
            if isinstance(record, str):
                lines.append(record)
                continue
            extra = " ".join(
                f"{key}={value}" for key, value in record.items() if key not in _LOG_CONTEXT_KEYS
            )
            lines.append(
                " ".join(filter(None, [str(record.get("level", "")), str(record.get("event", "")), extra]))
            )
        return "\n".join(lines)
