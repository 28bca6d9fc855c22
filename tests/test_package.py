"""The package as Airflow sees it: provider registration, example DAGs, public names."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_spark_async

ROOT = Path(__file__).resolve().parents[1]


def test_every_example_dag_imports_cleanly() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "example_dags"))
    assert bag.import_errors == {}
    assert "spark_standalone_sum_of_squares" in bag.dag_ids
    for dag_id in bag.dag_ids:
        assert bag.dags[dag_id].tasks, f"{dag_id} has no tasks"


def test_provider_info_lists_only_importable_names() -> None:
    info = airflow_spark_async.get_provider_info()
    for section in ("operators", "sensors", "hooks", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for path in info["extra-links"]:
        module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name), path
    for conn in info["connection-types"]:
        module, _, name = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        assert hook.conn_type == conn["connection-type"]
        for attr in ("conn_name_attr", "default_conn_name", "hook_name"):
            assert getattr(hook, attr), f"{hook} lacks {attr}"


def test_airflow_providers_list_shows_the_package_and_its_connection_types(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    airflow = str(Path(sys.executable).parent / "airflow")
    listed = subprocess.run([airflow, "providers", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "airflow-spark-async" in listed.stdout
    hooks = subprocess.run([airflow, "providers", "hooks"], env=env, capture_output=True, text=True, timeout=120)
    for conn in airflow_spark_async.get_provider_info()["connection-types"]:
        assert conn["connection-type"] in hooks.stdout


@pytest.mark.parametrize(
    "path",
    ["airflow_spark_async.standalone.triggers.SparkStandaloneTrigger"],
)
def test_trigger_class_paths_stored_in_users_databases_still_resolve(path: str) -> None:
    module, _, name = path.rpartition(".")
    assert isinstance(getattr(importlib.import_module(module), name), type)
