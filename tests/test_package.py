"""The package as Airflow sees it: provider registration, example DAGs, public names."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_spark_async
from tests.airflow_compat import dag_bag

ROOT = Path(__file__).resolve().parents[1]


def test_every_example_dag_imports_cleanly() -> None:
    bag = dag_bag(str(ROOT / "example_dags"))
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


HOOKS_OF_AIRFLOW = """
import logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
from airflow.providers_manager import ProvidersManager
manager = ProvidersManager()
manager.initialize_providers_hooks()
print("livy hook:", manager.hooks["livy"].hook_class_name)
"""


def test_no_connection_type_is_registered_twice_beside_the_official_providers(tmp_path: Path) -> None:
    """The dev environment has the official providers installed: Airflow must warn about no connection
    type registered twice, and ``livy`` keeps the official provider's hook and form."""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    found = subprocess.run([sys.executable, "-c", HOOKS_OF_AIRFLOW], env=env, capture_output=True, text=True,
                           timeout=120)
    assert found.returncode == 0, found.stderr
    output = found.stdout + found.stderr
    ours = ("spark_standalone", "livy", "aws", "databricks")  # livy and aws only without the official provider
    # Airflow 3.0 itself warns twice about the standard provider's 'fs' and 'package_index' types: not ours.
    twice = [line for line in output.splitlines() if "already registered" in line
             and any(f"connection_type '{conn_type}'" in line for conn_type in ours)]
    assert twice == [], output
    assert "livy hook: airflow.providers.apache.livy.hooks.livy.LivyHook" in output


def test_the_livy_form_is_registered_when_the_official_provider_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from airflow_spark_async.livy import provider_info

    real = metadata.distribution

    def without_official(name: str) -> metadata.Distribution:
        if name == provider_info.OFFICIAL_PROVIDER:
            raise metadata.PackageNotFoundError(name)
        return real(name)

    assert provider_info.CONNECTION_TYPES == []  # the official provider is installed here
    monkeypatch.setattr(metadata, "distribution", without_official)
    try:
        importlib.reload(provider_info)
        assert provider_info.CONNECTION_TYPES == [provider_info.LIVY_FORM]
        assert "livy" in [c["connection-type"] for c in airflow_spark_async.get_provider_info()["connection-types"]]
    finally:
        monkeypatch.undo()
        importlib.reload(provider_info)


@pytest.mark.parametrize(
    "path",
    ["airflow_spark_async.standalone.triggers.SparkStandaloneTrigger"],
)
def test_trigger_class_paths_stored_in_users_databases_still_resolve(path: str) -> None:
    module, _, name = path.rpartition(".")
    assert isinstance(getattr(importlib.import_module(module), name), type)


#: core modules merged in issue 10, and where their names live now: user code may import the old paths
MERGED_CORE_MODULES = {
    "states": "backend", "keys": "backend", "lazy": "backend", "clock": "retry", "policy": "retry",
    "fields": "spec", "options": "spec", "sync": "runtime", "connections": "runtime",
    "watcher": "runtime", "events": "trigger", "links": "operator",
}


@pytest.mark.parametrize(("old", "new"), sorted(MERGED_CORE_MODULES.items()))
def test_merged_core_modules_still_export_their_names(old: str, new: str) -> None:
    """Every name an old module exports is the very object of the module it merged into, so an
    ``isinstance`` check or a registry keyed by class sees no difference."""
    shim = importlib.import_module(f"airflow_spark_async.core.{old}")
    home = importlib.import_module(f"airflow_spark_async.core.{new}")
    assert shim.__all__, old
    for name in shim.__all__:
        obj = getattr(shim, name)
        if old == "clock" and name != "set_clock":  # bound methods of the one Clock object
            assert getattr(obj, "__self__", None) is home.clock, name
        else:
            assert obj is getattr(home, "KEY_PREFIX" if name == "PREFIX" else name), f"{old}.{name}"


def test_the_changelog_has_a_dated_section_for_this_version() -> None:
    """A release's notes exist before its wheel does: ``## [0.1.0] - 2026-12-04`` for version 0.1.0."""
    import datetime
    import re

    text = (ROOT / "CHANGELOG.md").read_text()
    found = re.search(rf"^## \[{re.escape(airflow_spark_async.__version__)}\] - (\d{{4}}-\d{{2}}-\d{{2}})$", text, re.M)
    assert found, f"CHANGELOG.md has no '## [{airflow_spark_async.__version__}] - YYYY-MM-DD' section"
    datetime.date.fromisoformat(found.group(1))
