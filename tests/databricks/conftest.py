"""Fixtures for the Databricks tests: a Jobs API test server per module and connections to it."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from airflow_spark_async.core.http import close_loop_sessions
from airflow_spark_async.core.ledger import MemoryLedger
from airflow_spark_async.databricks.backend import DatabricksBackend
from tests.conformance.harness import FakeTI
from tests.servers.databricks_server import DatabricksServer

T = TypeVar("T")
APP = "dbfs:/apps/sleep_then_exit.py"
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}


@pytest.fixture(scope="module")
def server() -> Iterator[DatabricksServer]:
    with DatabricksServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with no recorded requests, faults or scripts left by the previous one."""
    if "server" in request.fixturenames:
        srv: DatabricksServer = request.getfixturevalue("server")
        srv.clear()
        srv.state_fields = ("state", "status")
    yield


def connection(server: DatabricksServer, method: str = "pat", *, host: str | None = None,
               extra: dict[str, Any] | None = None, **fields: Any) -> str:
    """Define an ``AIRFLOW_CONN_*`` connection to ``server`` and return its id; ``fields``
    (``login``, ``password`` …) override the method's defaults."""
    defaults: dict[str, Any] = {
        "pat": {"password": server.pat},
        "oauth": {"login": server.client_id, "password": server.client_secret,
                  "extra": {"service_principal_oauth": True}},
        "azure": {"login": server.azure_client_id, "password": server.azure_client_secret,
                  "extra": {"azure_tenant_id": "tenant-1", "azure_ad_endpoint": f"{server.url}/aad/"}},
        "basic": {"login": server.username, "password": server.password},
    }[method]
    conn = {"conn_type": "databricks", "host": host or server.url, **defaults, **fields}
    conn["extra"] = {**defaults.get("extra", {}), **(extra or {})}
    conn_id = f"dbx_{method}_{uuid.uuid4().hex[:8]}"
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    return conn_id


@pytest.fixture
def pat_conn(server: DatabricksServer) -> str:
    return connection(server)


def run(make: Callable[[], Awaitable[T]]) -> T:
    """Run ``make()`` on a fresh loop, closing its HTTP sessions (as the worker's bridge does)."""

    async def go() -> T:
        try:
            return await make()
        finally:
            await close_loop_sessions()

    return asyncio.run(go())


async def backend_for(conn_id: str, **options: Any) -> DatabricksBackend:
    from airflow_spark_async.core.runtime import get_backend

    backend = await get_backend(DatabricksBackend, conn_id, options)
    assert isinstance(backend, DatabricksBackend)
    return backend


def ti(task_id: str = "task", try_number: int = 1, run_id: str | None = None) -> FakeTI:
    return FakeTI(task_id=task_id, run_id=run_id or f"manual__{uuid.uuid4().hex[:8]}", try_number=try_number)


@pytest.fixture
def ledger() -> MemoryLedger:
    return MemoryLedger()


def python_task(key: str, seconds: float = 0.5, exit_code: int = 0, **more: Any) -> dict[str, Any]:
    return {"task_key": key, "new_cluster": CLUSTER,
            "spark_python_task": {"python_file": APP, "parameters": [f"{seconds:g}", str(exit_code)]}, **more}


def notebook_task(key: str, seconds: float = 0.5, result: str | None = None, exit_code: int = 0,
                  **more: Any) -> dict[str, Any]:
    base = {"seconds": f"{seconds:g}", "exit_code": str(exit_code), **({"result": result} if result else {})}
    return {"task_key": key, "existing_cluster_id": "0101-abc",
            "notebook_task": {"notebook_path": f"/Shared/{key}", "base_parameters": base}, **more}


def cancel(trigger: Any) -> None:
    """Cancel a trigger's run through its own backend (tests leave no long run behind)."""

    async def go() -> None:
        await (await trigger.backend()).cancel(trigger.job_id, key=None)

    run(go)
