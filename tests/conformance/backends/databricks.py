"""Conformance harness for Databricks one-time runs (``DatabricksSubmitRunOperator``, official
arguments, personal access token) against the Jobs API test server behind a fault proxy.

``databricks_run_now.py`` runs the same suite for ``DatabricksRunNowOperator``; both build their
harness with :func:`databricks_harness_for`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_spark_async.core.ledger import MemoryLedger
from airflow_spark_async.core.operator import SparkJobOperator
from airflow_spark_async.databricks.operators import DatabricksRunNowOperator, DatabricksSubmitRunOperator
from airflow_spark_async.databricks.sensors import DatabricksRunSensor
from tests.conformance.harness import POLL, Harness, sensor_factory, sleep_args
from tests.servers.databricks_server import DatabricksServer
from tests.servers.fault_proxy import FaultProxy

APP = "dbfs:/apps/sleep_then_exit.py"  # the server runs it as tests/apps/sleep_then_exit.py would
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}
JOB_NAME = "conformance sleep_then_exit"


@contextlib.contextmanager
def databricks_harness_for(operator: str) -> Iterator[Harness]:
    """``operator`` is ``submit`` (a PAT) or ``run_now`` (OAuth M2M, so token fetches face the faults too)."""
    conn_id = f"conformance_databricks_{operator}"
    ledger = MemoryLedger()  # stands in for Airflow Variables, which outlive a task's tries
    with DatabricksServer() as server, FaultProxy(server.url) as proxy:
        if operator == "submit":
            conn: dict[str, Any] = {"conn_type": "databricks", "host": proxy.url, "password": server.pat}
        else:
            conn = {"conn_type": "databricks", "host": proxy.url, "login": server.client_id,
                    "password": server.client_secret, "extra": {"service_principal_oauth": True}}
            server.add_job(JOB_NAME, [{"task_key": "main", "existing_cluster_id": "0101-conformance",
                                       "spark_python_task": {"python_file": APP, "parameters": ["1", "0"]}}])
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)

        def make_operator(task_id: str, kind: str, seconds: float, **overrides: Any) -> SparkJobOperator:
            common: dict[str, Any] = {"task_id": task_id, "databricks_conn_id": conn_id, "polling_period_seconds": POLL,
                                      "deferrable": True, "ledger": ledger, "databricks_retry_delay": 0.1}
            if operator == "submit":
                return DatabricksSubmitRunOperator(
                    spark_python_task={"python_file": APP, "parameters": sleep_args(kind, seconds)},
                    new_cluster=CLUSTER,
                    **{**common, **overrides},
                )
            return DatabricksRunNowOperator(job_name=JOB_NAME, python_params=sleep_args(kind, seconds),
                                            **{**common, **overrides})

        yield Harness(
            name=f"databricks-{operator}",
            make_operator=make_operator,
            proxies=[proxy],
            submit_path=r"/api/2\.\d/jobs/(runs/submit|run-now)",
            cancel_path=r"/api/2\.\d/jobs/runs/cancel$",
            remote_state=server.life_cycle,
            cancelled_states={"CANCELED"},
            failure_text="RuntimeError: failing on purpose",
            conn_id=conn_id,
            reattach_by="ledger",
            # one sensor for runs however they started: checked once, with the one-time runs
            make_sensor=sensor_factory(DatabricksRunSensor, lambda run_id: {"run_id": run_id},
                                       databricks_conn_id=conn_id) if operator == "submit" else None,
            extra={"server": server},
        )
        del os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"]


@pytest.fixture(scope="session")
def databricks_harness() -> Iterator[Harness]:
    with databricks_harness_for("submit") as harness:
        yield harness
