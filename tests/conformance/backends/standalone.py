"""Conformance harness for the Spark standalone backend: the real local cluster, behind
fault proxies on its REST server and its web UI."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_spark_async.core.ledger import MemoryLedger
from airflow_spark_async.standalone.operators import SparkStandaloneSubmitOperator
from airflow_spark_async.standalone.sensors import SparkStandaloneDriverSensor
from tests.conformance.harness import Harness, operator_factory, sensor_factory
from tests.conftest import APPS, standalone_conn_json
from tests.servers.fault_proxy import FaultProxy


@pytest.fixture(scope="session")
def standalone_harness(spark_cluster: Any) -> Iterator[Harness]:
    conn_id = "conformance_standalone"
    ledger = MemoryLedger()  # stands in for Airflow Variables, which outlive a task's tries
    with FaultProxy(spark_cluster.rest_url) as rest, FaultProxy(spark_cluster.ui_url) as ui:
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = standalone_conn_json(rest.url, ui.url, spark_cluster.master_url)

        make_operator = operator_factory(
            SparkStandaloneSubmitOperator, f"file://{APPS}/sleep_then_exit.py", conn_id=conn_id, ledger=ledger
        )

        def remote_state(job_id: str) -> str:
            url = f"{spark_cluster.rest_url}/v1/submissions/status/{job_id}"
            with urllib.request.urlopen(url, timeout=10) as resp:
                return str(json.load(resp).get("driverState"))

        yield Harness(
            name="standalone",
            make_operator=make_operator,
            proxies=[rest, ui],
            submit_path=r"/v1/submissions/create",
            cancel_path=r"/v1/submissions/kill/",
            remote_state=remote_state,
            cancelled_states={"KILLED"},
            failure_text="non-zero status",
            conn_id=conn_id,
            reattach_by="ledger",
            make_sensor=sensor_factory(SparkStandaloneDriverSensor, lambda job_id: {"job_id": job_id}, conn_id=conn_id),
        )
        del os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"]
