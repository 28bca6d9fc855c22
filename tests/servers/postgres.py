"""A throw-away PostgreSQL server for the e2e Airflow stacks: production's metadata database.

Why: production Airflow runs on PostgreSQL, and the scheduler and triggerer take other code paths
there (``SELECT ... FOR UPDATE SKIP LOCKED`` row locks, sequences that never reuse an id, real
concurrent writers) than on SQLite. The e2e suite therefore runs its Airflow on a real PostgreSQL,
started here from the distribution's binaries and gone when the test session ends:

* **getting it** — :func:`ensure_installed` looks for ``initdb``/``pg_ctl``/``postgres`` on ``PATH``
  and in ``/usr/lib/postgresql/<version>/bin`` (where Debian puts them; the newest version wins).
  If there are none and we run as root on a Debian/Ubuntu machine (CI), it installs the
  distribution's ``postgresql`` package with ``apt-get``, the way ``./dev setup`` installs Java —
  with ``create_main_cluster = false`` set first, so the package neither creates nor starts a
  system cluster on port 5432 (the same step as the official postgres container image);
* **starting it** — :class:`PostgresServer` runs ``initdb`` into a fresh temp dir and starts
  ``postgres`` on a free loopback port, with its unix socket in that dir. PostgreSQL refuses to run
  as root, so as root both run as the ``postgres`` user the package created (``nobody`` if there is
  none). Durability is switched off (``fsync``, ``synchronous_commit``, ``full_page_writes``): the
  data is thrown away anyway, and a loaded 2-core machine should not wait for its disk;
* **stopping it** — :meth:`PostgresServer.stop` does a fast shutdown (SIGINT), SIGKILLs what is left
  after a grace period and removes the temp dir. :func:`shared_server` (one server per test session)
  registers that with ``atexit``, so it also runs after failed tests and Ctrl-C; the server gets
  ``PR_SET_PDEATHSIG`` (SIGINT), so even a SIGKILLed pytest leaves no postgres running.

Authentication is ``trust`` and the server listens on 127.0.0.1 only: it exists for the lifetime of
one test session on the machine that runs it. Queries use ``psycopg2`` (the ``dev`` extra), the
driver Airflow uses too.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.servers.background import free_port

__all__ = [
    "PostgresServer",
    "PostgresUnavailable",
    "ensure_installed",
    "find_bin_dir",
    "shared_server",
]

#: Where Debian's ``postgresql-<version>`` packages put the server binaries.
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
#: The binaries a throw-away cluster needs.
REQUIRED = ("initdb", "postgres")
#: The superuser initdb creates (and the role Airflow connects as).
SUPERUSER = "postgres"
#: Taken while apt-get runs, so two pytest processes starting at once do not install side by side.
INSTALL_LOCK = Path(tempfile.gettempdir()) / "airflow-spark-async-postgres-install.lock"
CREATECLUSTER_CONF = Path("/etc/postgresql-common/createcluster.conf")

#: Server settings of a throw-away cluster (``postgres -c``); see the module docstring.
SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # every Airflow component holds a pool (5 + 10 overflow by default); two triggerers, a restarted
    # scheduler and the api-server's workers stay well below this
    "max_connections": "300",
    "shared_buffers": "128MB",
    "log_min_messages": "warning",
    "log_min_error_statement": "error",
}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries, and they cannot be installed here."""


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name)) or (0,)


def find_bin_dir() -> Path | None:
    """The folder with ``initdb`` and ``postgres``: from ``PATH`` (symlinks resolved), else the newest
    ``/usr/lib/postgresql/<version>/bin``; ``None`` if PostgreSQL is not installed."""
    on_path = shutil.which("initdb")
    candidates: list[Path] = []
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted((Path(p) for p in glob.glob(DEBIAN_BIN_GLOB)), key=_version_key, reverse=True)
    for bin_dir in candidates:
        if all(os.access(bin_dir / name, os.X_OK) for name in REQUIRED):
            return bin_dir
    return None


def _apt_install() -> None:
    """Install the distribution's PostgreSQL without letting it create or start a system cluster."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args: str) -> None:
        result = subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PostgresUnavailable(f"apt-get {' '.join(args)} failed ({result.returncode}):\n"
                                      f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")

    print("==> PostgreSQL not found: installing the distribution's postgresql package (e2e metadata DB)",
          file=sys.stderr, flush=True)
    apt("update", "-qq")
    apt("install", "-y", "-qq", "postgresql-common")
    if CREATECLUSTER_CONF.is_file():
        text = CREATECLUSTER_CONF.read_text()
        new = re.sub(r"(?m)^#?\s*create_main_cluster\s*=.*$", "create_main_cluster = false", text)
        if "create_main_cluster = false" not in new:
            new += "\ncreate_main_cluster = false\n"
        CREATECLUSTER_CONF.write_text(new)
    apt("install", "-y", "-qq", "postgresql")


def ensure_installed() -> Path:
    """The PostgreSQL server binaries' folder, installing them with apt-get (as root) if missing."""
    found = find_bin_dir()
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin. "
            "Install them (Debian/Ubuntu: apt-get install postgresql) or run the e2e suite on SQLite: "
            "E2E_DATABASE=sqlite (docs/testing-postgres.md)."
        )
    with open(INSTALL_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = find_bin_dir()  # another process may have installed it while this one waited
        if found is None:
            _apt_install()
            found = find_bin_dir()
    if found is None:
        raise PostgresUnavailable("apt-get installed postgresql, but initdb/postgres are still not found")
    return found


def _run_as_user() -> pwd.struct_passwd | None:
    """The account the server runs as when we are root (PostgreSQL refuses root); ``None``: ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresUnavailable("running as root, but there is neither a 'postgres' nor a 'nobody' user")


def _die_with_parent() -> None:
    """``preexec_fn``: the kernel sends SIGINT (PostgreSQL's fast shutdown) when the test process dies.

    Runs after the child switched user (``Popen(user=...)``), which would clear an earlier setting.
    """
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)  # 1 == PR_SET_PDEATHSIG


def _quote_ident(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"not a plain database name: {name!r}")
    return f'"{name}"'


class PostgresServer:
    """One throw-away PostgreSQL cluster; ``with PostgresServer() as pg:`` or ``start()``/``stop()``.

    :param startup_timeout: seconds to wait for the server to accept connections.
    """

    def __init__(self, *, startup_timeout: float = 60.0) -> None:
        self.startup_timeout = startup_timeout
        self.bin_dir: Path | None = None
        self.root: Path | None = None
        self.port: int | None = None
        self.popen: subprocess.Popen[bytes] | None = None
        self.user = _run_as_user()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "server not started"
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        assert self.root is not None, "server not started"
        return self.root / "postgres.log"

    def _user_kwargs(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def start(self) -> None:
        """initdb into a new temp dir, start ``postgres`` on a free loopback port, wait until it answers."""
        self.bin_dir = ensure_installed()
        self.root = Path(tempfile.mkdtemp(prefix="airflow-stack-pg-"))
        try:
            if self.user is not None:
                os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
            initdb = subprocess.run(
                [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                 "--encoding=UTF8", "--no-locale", "--no-sync"],
                capture_output=True, text=True, check=False, cwd=self.root, stdin=subprocess.DEVNULL,
                **self._user_kwargs(),
            )
            if initdb.returncode != 0:
                raise PostgresUnavailable(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}\n{initdb.stderr}")
            for _attempt in range(3):  # a free port can be taken by someone else before postgres binds it
                self.port = free_port()
                if self._launch():
                    return
                self._reap()
            raise PostgresUnavailable(f"postgres did not start:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def _launch(self) -> bool:
        """Start the server process; ``True`` once it accepts connections, ``False`` if it exited."""
        assert self.bin_dir is not None and self.root is not None
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-k", str(self.root)]
        for key, value in SETTINGS.items():
            argv += ["-c", f"{key}={value}"]
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                start_new_session=True, preexec_fn=_die_with_parent, **self._user_kwargs(),
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                return False
            try:
                with contextlib.closing(self.connect()):
                    return True
            except Exception:
                time.sleep(0.1)
        raise PostgresUnavailable(f"postgres did not answer within {self.startup_timeout:.0f}s:\n{self.log_tail()}")

    def _reap(self) -> None:
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)

    def is_running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT: sessions are ended, no waiting for clients), SIGKILL after ``timeout``
        seconds, then remove the cluster's temp dir. Safe to call more than once."""
        with self._lock:
            popen, self.popen = self.popen, None
            if popen is not None and popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    popen.send_signal(signal.SIGINT)
                try:
                    popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    # the whole session (postmaster and backends): the leader is not reaped yet, so
                    # its pid, which is the group id, cannot have been reused
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(popen.pid, signal.SIGKILL)
                    popen.wait(timeout=10)
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AssertionError) as exc:
            return f"<no postgres log: {exc}>"

    # ------------------------------------------------------------------ databases and queries

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        """SQLAlchemy URL of ``database`` (Airflow's ``[database] sql_alchemy_conn``)."""
        return f"{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres", **kwargs: Any) -> Any:
        """A psycopg2 connection (autocommit) to ``database``."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=database,
                                connect_timeout=10, **kwargs)
        conn.autocommit = True
        return conn

    def execute(self, sql: str, params: Sequence[Any] = (), database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement (autocommit) and return its rows (none for statements without a result)."""
        with contextlib.closing(self.connect(database)) as conn, conn.cursor() as cur:
            cur.execute(sql, tuple(params))
            return list(cur.fetchall()) if cur.description is not None else []

    @contextlib.contextmanager
    def read_only(self, database: str) -> Iterator[Any]:
        """A cursor of a read-only session on ``database`` (each statement sees the latest commits)."""
        with contextlib.closing(self.connect(database)) as conn:
            conn.set_session(readonly=True, autocommit=True)
            with conn.cursor() as cur:
                yield cur

    def create_database(self, name: str, template: str | None = None) -> None:
        """``CREATE DATABASE name [TEMPLATE template]``: a copy of ``template`` costs a fraction of a
        second (the template must have no open connections)."""
        sql = f"CREATE DATABASE {_quote_ident(name)}"
        if template is not None:
            sql += f" TEMPLATE {_quote_ident(template)}"
        self.execute(sql)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending its remaining sessions (``WITH (FORCE)``, PostgreSQL 13+)."""
        self.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")


_SHARED: PostgresServer | None = None
_SHARED_LOCK = threading.Lock()


def shared_server() -> PostgresServer:
    """The session's one PostgreSQL server, started on first use and stopped at interpreter exit."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None or not _SHARED.is_running():
            if _SHARED is not None:
                _SHARED.stop()
            server = PostgresServer()
            server.start()
            _SHARED = server
        return _SHARED


@atexit.register
def _stop_shared() -> None:
    """Registered when this module is imported: ``atexit`` runs handlers last-in first-out, so a
    module that imports this one first and then registers its own clean-up (``airflow_stack`` stops
    its Airflow components) has that run *before* the server goes away."""
    with _SHARED_LOCK:
        if _SHARED is not None:
            _SHARED.stop()
