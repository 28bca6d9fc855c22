"""One real Airflow 3 stack for every e2e scenario of every backend.

Why one: starting a stack (four Airflow processes, a migrated DB, parsing the DAGs) and the
services behind it costs tens of seconds on a loaded 2-core machine; the scenarios act on one
task instance at a time and tell their jobs apart by run id or key, so they can share it. The
DAG folder holds every example DAG plus the e2e-only DAGs of ``tests/e2e/dags/``; connections to
all four services are set once. The metadata DB is PostgreSQL (``E2E_DATABASE=sqlite``: SQLite; see
docs/testing-postgres.md). ``test_stack_smoke.py`` (the harness's own self-test) keeps its
own stack: its module fixtures override these.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import standalone_conn_json
from tests.e2e.airflow_stack import AirflowStack, e2e_database
from tests.e2e.backends import BACKENDS, HEALTH_CHECK_THRESHOLD, SLOTS, Backend, GatedLivyServer, Servers
from tests.emr.moto_aws import MotoAws
from tests.servers.databricks_server import DatabricksServer

ROOT = Path(__file__).resolve().parents[2]
E2E_DAGS = Path(__file__).parent / "dags"
#: how long an EMR step of the example pipeline takes on moto
STEP_SECONDS = 10.0


@pytest.fixture(scope="package")
def livy(spark_cluster: Any) -> Iterator[GatedLivyServer]:
    """Real PySpark batches for the example DAGs; scripted ones for the failover and clear DAGs."""
    with GatedLivyServer(spark_master=spark_cluster.master_url) as server:
        yield server


@pytest.fixture(scope="package")
def aws() -> Iterator[MotoAws]:
    with MotoAws(default_seconds=STEP_SECONDS) as service:
        yield service


@pytest.fixture(scope="package")
def databricks() -> Iterator[DatabricksServer]:
    with DatabricksServer(default_seconds=8) as server:
        server.add_job("nightly-etl", [{"task_key": "etl", "existing_cluster_id": "0101-etl",
                                        "spark_python_task": {"python_file": "dbfs:/jobs/etl.py"}}])
        yield server


@pytest.fixture(scope="package")
def servers(spark_cluster: Any, livy: GatedLivyServer, aws: MotoAws, databricks: DatabricksServer) -> Servers:
    return Servers(spark=spark_cluster, livy=livy, aws=aws, databricks=databricks)


@pytest.fixture(scope="package")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    root = tmp_path_factory.mktemp("e2e")
    dags = root / "dags"
    shutil.copytree(ROOT / "example_dags", dags, ignore=shutil.ignore_patterns("__pycache__"))
    for dag_file in E2E_DAGS.glob("*.py"):
        shutil.copy(dag_file, dags / dag_file.name)
    (root / "output").mkdir()
    spark, databricks = servers.spark, servers.databricks
    env = {
        "AIRFLOW_CONN_SPARK_STANDALONE_DEFAULT": standalone_conn_json(spark.rest_url, spark.ui_url, spark.master_url),
        "AIRFLOW_CONN_LIVY_DEFAULT": json.dumps({"conn_type": "livy", "host": "127.0.0.1", "port": servers.livy.port}),
        "AIRFLOW_CONN_AWS_DEFAULT": servers.aws.conn_json(),
        "AIRFLOW_CONN_DATABRICKS_DEFAULT": json.dumps(
            {"conn_type": "databricks", "host": databricks.url, "login": databricks.client_id,
             "password": databricks.client_secret, "extra": {"service_principal_oauth": True}}
        ),
        "SPARK_ASYNC_OUTPUT_DIR": str(root / "output"),
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(HEALTH_CHECK_THRESHOLD),
        # Room for the failover's hundred task runs to queue at once (each submits, or resumes, and leaves).
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "256",
    }
    airflow = AirflowStack(dags, parallelism=SLOTS, base_tmp_dir=root / "airflow", extra_env=env, dags_paused=False,
                           startup_timeout=240, database=e2e_database())
    with airflow:
        yield airflow
    assert airflow.all_pids() == [], "processes left behind"


@pytest.fixture
def backend(request: pytest.FixtureRequest, stack: AirflowStack, servers: Servers) -> Backend:
    """The backend a scenario is parametrized with (``indirect=True``), its job DAG parsed."""
    chosen = BACKENDS[str(request.param)](stack, servers)
    stack.wait_for_dag(chosen.dag_id, timeout=180)
    return chosen
