"""The stack's Airflow: the e2e harness's real deployment on fixed ports, with a connection per backend.

Why reuse ``tests/e2e/airflow_stack.py``: it is the one place that knows how to run Airflow 3's four
components from environment variables alone (no race on ``airflow.cfg``), SQLite with the
trigger-id fix applied right after ``db migrate`` (docs/development.md), LocalExecutor, and how to
tear a component down with every process it spawned. What the stack adds is what a person needs
and a test does not: fixed ports, a DAG folder that holds example_dags/ and the user's own, and an
``AIRFLOW_CONN_*`` for every backend pointing at the emulators.

The harness has its components die with the process that started them (``PR_SET_PDEATHSIG``), so
it runs in a keeper process of its own (``serve airflow``), detached from the terminal, that holds
the stack until SIGTERM.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from airflow_spark_async_devtools.stack.config import ROOT, StackConfig
from tests.e2e.airflow_stack import AirflowStack, StackPorts

__all__ = ["AIRFLOW_CONNECTIONS", "build_airflow", "connections", "prepare_dags_folder"]

#: the connection ids the example DAGs use, one per backend
AIRFLOW_CONNECTIONS = (
    "spark_standalone_default", "spark_default", "livy_default", "aws_default", "databricks_default",
)
#: the Databricks emulator's OAuth M2M service principal (tests/servers/databricks_server.py defaults)
DATABRICKS_CLIENT = ("sp-client", "sp-secret")


def connections(cfg: StackConfig) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` for every backend, pointing at the stack's cluster and emulators."""
    p = cfg.ports
    return {
        "AIRFLOW_CONN_SPARK_STANDALONE_DEFAULT": json.dumps({
            "conn_type": "spark_standalone", "host": "127.0.0.1", "port": p.spark_rest, "schema": "http",
            "extra": {"ui_url": cfg.url("spark_ui"), "master_url": f"spark://127.0.0.1:{p.spark_master}"},
        }),
        # the official provider's spark connection, as SparkSubmitOperator reads it (the master's RPC port)
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({
            "conn_type": "spark", "host": "spark://127.0.0.1", "port": p.spark_master,
            "extra": {"deploy-mode": "cluster", "rest-port": p.spark_rest, "ui_url": cfg.url("spark_ui")},
        }),
        "AIRFLOW_CONN_LIVY_DEFAULT": json.dumps({"conn_type": "livy", "host": "127.0.0.1", "port": p.livy}),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({
            "conn_type": "aws", "login": "AKIAASASTACK00000001", "password": "stack-secret",
            "extra": {"region_name": "us-east-1", "endpoint_url": cfg.url("aws")},
        }),
        "AIRFLOW_CONN_DATABRICKS_DEFAULT": json.dumps({
            "conn_type": "databricks", "host": cfg.url("databricks"), "login": DATABRICKS_CLIENT[0],
            "password": DATABRICKS_CLIENT[1], "extra": {"service_principal_oauth": True},
        }),
    }


def prepare_dags_folder(cfg: StackConfig) -> Path:
    """``<state>/dags`` with a symlink to example_dags/ and one to the user's folder.

    Links, not copies, so that an edit to a DAG file shows in Airflow at its next parse; Airflow's
    DAG discovery follows symlinks. The example DAGs find their Spark apps next to their real path.
    """
    dags = cfg.dags_dir
    shutil.rmtree(dags, ignore_errors=True)
    dags.mkdir(parents=True)
    (dags / "example_dags").symlink_to(ROOT / "example_dags", target_is_directory=True)
    if cfg.user_dags is not None:
        (dags / "user_dags").symlink_to(cfg.user_dags, target_is_directory=True)
    return dags


def build_airflow(cfg: StackConfig) -> AirflowStack:
    """A fresh Airflow (new SQLite DB, new secrets) on the stack's fixed ports; not started yet."""
    shutil.rmtree(cfg.airflow_dir, ignore_errors=True)
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **connections(cfg),
        "SPARK_ASYNC_OUTPUT_DIR": str(cfg.output_dir),
        # the example DAGs are manual (schedule=None): unpaused, so a trigger runs at once
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
    }
    # The harness picks free ports for tests; the stack's are fixed.
    ports = StackPorts(api=cfg.ports.airflow, worker_logs=cfg.ports.airflow_worker_logs,
                       trigger_logs=cfg.ports.airflow_trigger_logs)
    return AirflowStack(prepare_dags_folder(cfg), parallelism=cfg.parallelism, base_tmp_dir=cfg.airflow_dir,
                        extra_env=env, dags_paused=False, startup_timeout=300, ports=ports)
