"""Shared fixtures: one real local Spark standalone cluster for the whole session.

The cluster is started from the installed pyspark wheel on free ports in a temporary
directory and stopped at the end, so tests never clash with a developer's own cluster.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Before anything imports Airflow: keep it out of ~/airflow and away from the examples.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="asa-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

import pytest

APPS = Path(__file__).parent / "apps"


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from airflow_spark_async_devtools.local_cluster import LocalSparkCluster

    cluster = LocalSparkCluster.with_free_ports(tmp_path_factory.mktemp("spark-cluster"), worker_cores=12,
                                                worker_memory="12g")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def standalone_conn_json(rest_url: str, ui_url: str, master_url: str) -> str:
    """An ``AIRFLOW_CONN_*`` value for a ``spark_standalone`` connection."""
    import json

    host_port = rest_url.split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    return json.dumps(
        {
            "conn_type": "spark_standalone",
            "host": host,
            "port": int(port),
            "schema": "http",
            "extra": {"ui_url": ui_url, "master_url": master_url},
        }
    )


def spark_conn_json(rest_url: str, ui_url: str, master_url: str) -> str:
    """An ``AIRFLOW_CONN_*`` value for the official provider's ``spark`` connection to the same cluster:
    the master on its RPC port, the REST server's port and the UI as extras, cluster deploy mode."""
    import json

    host, rpc_port = master_url.removeprefix("spark://").rsplit(":", 1)
    return json.dumps({
        "conn_type": "spark", "host": f"spark://{host}", "port": int(rpc_port),
        "extra": {"deploy-mode": "cluster", "rest-port": int(rest_url.rsplit(":", 1)[1]), "ui_url": ui_url},
    })


@pytest.fixture(autouse=True)
def _fresh_backends() -> Iterator[None]:
    """Backends are cached per process (as in a worker or triggerer); tests point one connection id
    at a new server each time, so each test starts with an empty cache."""
    from airflow_spark_async.core.runtime import reset_backends

    reset_backends()
    yield
    reset_backends()
