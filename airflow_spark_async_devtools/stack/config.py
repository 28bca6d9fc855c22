"""Where the local stack lives and which loopback ports it takes.

Why fixed ports: a stack a developer tries DAGs on is reached from a browser, from ``curl`` and from
their own scripts, so its addresses must be the same on every ``./dev stack up`` and printable
in the docs. They are chosen not to clash with each other or with the usual defaults of the tools
around: Airflow's api-server keeps its own default 8080, so the Spark master's web UI (Spark's
default is 8080 too) moves to 8090 -- see :mod:`airflow_spark_async_devtools.local_cluster`. Every
port can be moved (``--port NAME=PORT``) and tests take free ones (``--free-ports``) so that they can
run beside a developer's stack.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_spark_async_devtools.local_cluster.network import HOST, free_ports

__all__ = [
    "DEFAULT_PORTS",
    "PORT_PURPOSES",
    "ROOT",
    "STATE_FILE",
    "Ports",
    "StackConfig",
    "default_state_dir",
]

#: The repository checkout this package runs from (the stack reuses its example DAGs and test servers).
ROOT = Path(__file__).resolve().parents[2]
STATE_FILE = "stack.json"

#: What each port is for, in the words a "port in use" message and ``status`` print.
PORT_PURPOSES: dict[str, str] = {
    "airflow": "Airflow api-server (UI + REST API)",
    "airflow_worker_logs": "Airflow worker log server",
    "airflow_trigger_logs": "Airflow triggerer log server",
    "spark_master": "Spark master RPC",
    "spark_rest": "Spark REST submission server",
    "spark_ui": "Spark master web UI",
    "spark_worker_ui": "Spark worker web UI",
    "livy": "Livy emulator",
    "databricks": "Databricks emulator",
    "aws": "AWS emulator (moto: EMR, EMR Serverless, S3)",
    "moto": "moto's own server (behind the AWS emulator)",
}


@dataclass(frozen=True)
class Ports:
    """Every loopback port of one stack; the defaults are what ``./dev stack up`` prints and the docs show."""

    airflow: int = 8080
    airflow_worker_logs: int = 8793
    airflow_trigger_logs: int = 8794
    spark_master: int = 7077
    spark_rest: int = 6066
    spark_ui: int = 8090
    spark_worker_ui: int = 8081
    livy: int = 8998
    databricks: int = 8999
    aws: int = 5000
    moto: int = 5001

    def __post_init__(self) -> None:
        values = dataclasses.asdict(self)
        for name, port in values.items():
            if not 0 < int(port) < 65536:
                raise ValueError(f"port {name}={port} is not between 1 and 65535")
        clashes = {port for port in values.values() if list(values.values()).count(port) > 1}
        if clashes:
            raise ValueError(f"two components would share port(s) {sorted(clashes)}: {values}")

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ports:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: int(v) for k, v in data.items() if k in known})

    def with_overrides(self, overrides: Iterable[str]) -> Ports:
        """These ports with ``NAME=PORT`` overrides (the ``--port`` option); unknown names are an error."""
        changes: dict[str, int] = {}
        for item in overrides:
            name, sep, value = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in PORT_PURPOSES or not value.strip().isdigit():
                raise ValueError(f"--port {item!r}: expected NAME=PORT with NAME one of {', '.join(PORT_PURPOSES)}")
            changes[name] = int(value)
        return dataclasses.replace(self, **changes)

    @classmethod
    def free(cls) -> Ports:
        """Ports free right now (tests: a stack beside a developer's own, or beside other tests)."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**dict(zip(names, free_ports(len(names)), strict=True)))


DEFAULT_PORTS = Ports()


def default_state_dir() -> Path:
    """``$STACK_DIR`` or ``<repo>/.stack`` (git-ignored)."""
    return Path(os.environ.get("STACK_DIR") or ROOT / ".stack").expanduser().resolve()


@dataclass
class StackConfig:
    """What one stack was started with; saved as ``<state_dir>/stack.json`` so that ``status`` and
    ``down`` need nothing but the state folder, and a second ``up`` starts only what is missing."""

    state_dir: Path
    stack_id: str
    ports: Ports = field(default_factory=Ports)
    #: the user's own DAG folder, next to example_dags/ (``--dags`` / ``$STACK_DAGS``)
    user_dags: Path | None = None
    #: how long an emulated job (one that cannot run on the local cluster) takes
    job_seconds: float = 10.0
    #: LocalExecutor worker slots
    parallelism: int = 4
    #: cores and memory the Spark worker offers (each cluster-mode driver and executor takes its share)
    worker_cores: int = 12
    worker_memory: str = "12g"

    # ------------------------------------------------------------------ layout

    @property
    def run_dir(self) -> Path:
        """Pid files and the ready files the components write (``<name>.pid``, ``<name>.json``)."""
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def spark_dir(self) -> Path:
        return self.state_dir / "spark"

    @property
    def airflow_dir(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def dags_dir(self) -> Path:
        """The ``[core] dags_folder``: symlinks to example_dags/ and the user's folder."""
        return self.state_dir / "dags"

    @property
    def output_dir(self) -> Path:
        """``SPARK_ASYNC_OUTPUT_DIR`` of the example DAGs (their jobs write their answers here)."""
        return self.state_dir / "output"

    @property
    def jobs_dir(self) -> Path:
        """Logs of the jobs the EMR emulator runs for real (``<step id>/stdout|stderr``)."""
        return self.state_dir / "jobs"

    def url(self, name: str) -> str:
        return f"http://{HOST}:{getattr(self.ports, name)}"

    # ------------------------------------------------------------------ persistence

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "stack_id": self.stack_id,
            "ports": self.ports.to_dict(),
            "user_dags": str(self.user_dags) if self.user_dags else None,
            "job_seconds": self.job_seconds,
            "parallelism": self.parallelism,
            "worker_cores": self.worker_cores,
            "worker_memory": self.worker_memory,
        }
        tmp = self.state_dir / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.state_dir / STATE_FILE)

    @classmethod
    def load(cls, state_dir: Path) -> StackConfig | None:
        try:
            data = json.loads((state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return cls(
            state_dir=state_dir,
            stack_id=str(data["stack_id"]),
            ports=Ports.from_dict(data.get("ports") or {}),
            user_dags=Path(data["user_dags"]) if data.get("user_dags") else None,
            job_seconds=float(data.get("job_seconds", 10.0)),
            parallelism=int(data.get("parallelism", 4)),
            worker_cores=int(data.get("worker_cores", 12)),
            worker_memory=str(data.get("worker_memory", "12g")),
        )
