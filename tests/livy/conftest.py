"""Fixtures of the Livy tests: the Livy test server (scripted, or running real PySpark on the local
cluster), a fault proxy in front of it, connections as ``AIRFLOW_CONN_*`` variables, and a
migrated Airflow database for the tests that run whole DAGs with ``dag.test()``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_spark_async.core.runtime import get_backend, reset_backends
from airflow_spark_async.core.runtime import run_sync as run  # the worker's bridge: one private loop per call
from airflow_spark_async.livy.backend import LivyBackend
from tests.conformance.harness import FakeTI
from tests.servers.fault_proxy import FaultProxy
from tests.servers.livy_server import LivyServer

__all__ = ["CONN", "backend", "context", "run", "set_conn"]

CONN = "livy_test"


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, port: int, **fields: Any) -> None:
    """Define connection ``conn_id`` to 127.0.0.1:``port``; ``fields`` override or add (``extra`` …)."""
    conn = {"conn_type": "livy", "host": "127.0.0.1", "port": port, "schema": "http", **fields}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    reset_backends()  # backends are cached per process: a redefined connection must be read again


def context(ti: FakeTI | None = None) -> Any:
    """The part of a task's context the operators read: the task instance."""
    return {"ti": ti or FakeTI()}


async def backend(conn_id: str = CONN, **options: Any) -> LivyBackend:
    built = await get_backend(LivyBackend, conn_id, options)
    assert isinstance(built, LivyBackend)
    return built


@pytest.fixture
def livy(monkeypatch: pytest.MonkeyPatch) -> Iterator[LivyServer]:
    """A scripted Livy server; connection ``livy_test`` points at it."""
    with LivyServer() as server:
        set_conn(monkeypatch, CONN, server.port)
        yield server


@pytest.fixture
def proxied_livy(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LivyServer, FaultProxy]]:
    """A scripted Livy server behind a fault proxy; connection ``livy_test`` points at the proxy."""
    with LivyServer() as server, FaultProxy(server.origin) as proxy:
        set_conn(monkeypatch, CONN, proxy.port)
        yield server, proxy


@pytest.fixture(scope="session")
def spark_livy(spark_cluster: Any) -> Iterator[LivyServer]:
    """A Livy server that runs every batch as a real spark-submit on the local cluster."""
    with LivyServer(spark_master=spark_cluster.master_url) as server:
        yield server


@pytest.fixture(scope="session")
def dags_folder() -> Path:
    """A migrated Airflow database and its (empty) DAGs folder, for ``dag.test()``."""
    from airflow.configuration import conf
    from airflow.utils import db

    db.initdb()
    folder = Path(conf.get("core", "dags_folder"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
