"""Conformance harness for the Livy backend: the Livy test server running every batch as a real
spark-submit on the local Spark cluster, behind a fault proxy."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_spark_async.livy.operators import LivyBatchOperator
from airflow_spark_async.livy.sensors import LivyBatchSensor
from tests.conformance.harness import Harness, operator_factory, sensor_factory
from tests.conftest import APPS
from tests.servers.fault_proxy import FaultProxy
from tests.servers.livy_server import LivyServer


def livy_conn_json(port: int, **extra: Any) -> str:
    """An ``AIRFLOW_CONN_*`` value for a ``livy`` connection to 127.0.0.1:``port``."""
    return json.dumps({"conn_type": "livy", "host": "127.0.0.1", "port": port, "schema": "http", "extra": extra})


@pytest.fixture(scope="session")
def livy_harness(spark_cluster: Any) -> Iterator[Harness]:
    conn_id = "conformance_livy"
    with LivyServer(spark_master=spark_cluster.master_url) as livy, FaultProxy(livy.origin) as proxy:
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = livy_conn_json(proxy.port)

        make_operator = operator_factory(LivyBatchOperator, f"file://{APPS}/sleep_then_exit.py", conn_id=conn_id)

        yield Harness(
            name="livy",
            make_operator=make_operator,
            proxies=[proxy],
            submit_path=r"/batches$",
            cancel_path=r"/batches/\d+$",
            remote_state=livy.batch_state,
            cancelled_states={"killed", "deleted"},
            failure_text="the Spark application failed",
            conn_id=conn_id,
            reattach_by="backend",
            cancel_method="DELETE",
            # Livy's default, like the official LivySensor's, is any end; ["success"] is its documented
            # way to fail the sensor when the batch fails
            result_of=int,  # the batch id as an int, as the official LivyOperator returns it
            make_sensor=sensor_factory(LivyBatchSensor, lambda job_id: {"batch_id": job_id}, livy_conn_id=conn_id,
                                       target_states=["success"]),
        )
        del os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"]
