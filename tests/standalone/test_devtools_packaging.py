"""The local cluster helper is developer tooling: the runtime wheel does not ship it, and its old import
path still works where it is installed and explains itself where it is not."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
OLD_PATH = "airflow_spark_async.standalone.local_cluster"
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_the_runtime_wheel_ships_only_the_runtime_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["airflow_spark_async"]
    assert not (ROOT / "airflow_spark_async" / "standalone" / "local_cluster").exists()


def test_the_helpers_dependencies_are_declared_in_the_local_extra_that_dev_includes() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    local = " ".join(extras["local"])
    assert "psutil" in local and "[spark]" in local
    [own] = [requirement for requirement in extras["dev"] if requirement.startswith("airflow-spark-async[")]
    assert "local" in own


def test_the_old_import_path_re_exports_the_developer_tool() -> None:
    from airflow_spark_async_devtools import local_cluster

    old = importlib.import_module(OLD_PATH)
    assert old.LocalSparkCluster is local_cluster.LocalSparkCluster
    assert set(old.__all__) == set(local_cluster.__all__)


def test_the_old_import_path_says_how_to_get_the_tool_where_it_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, OLD_PATH, raising=False)
    for name in ("airflow_spark_async_devtools", "airflow_spark_async_devtools.local_cluster"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(ImportError, match=r"airflow_spark_async_devtools.*pip install -e '\.\[local\]'"):
        importlib.import_module(OLD_PATH)
