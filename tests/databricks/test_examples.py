"""The Databricks example DAGs import cleanly and say what they claim; the provider lists the
Databricks parts, and registers the ``databricks`` connection type only without the official one."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_spark_async
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.databricks.operators import DatabricksRunNowOperator, DatabricksSubmitRunOperator
from airflow_spark_async.databricks.sensors import DatabricksRunSensor
from tests.airflow_compat import dag_bag

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "example_dags"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("databricks_*.py")), ids=lambda p: p.stem)
def test_every_databricks_example_imports_cleanly_without_the_official_provider(path: Path) -> None:
    bag = dag_bag(str(path))
    assert bag.import_errors == {}
    [dag] = bag.dags.values()
    assert dag.tasks
    assert "airflow.providers.databricks" not in path.read_text()


def test_the_examples_cover_notebook_python_and_jar_tasks_and_wait_in_the_triggerer() -> None:
    bag = dag_bag(str(EXAMPLES))
    notebook = bag.dags["databricks_notebook"].get_task("daily_summary")
    assert isinstance(notebook, DatabricksSubmitRunOperator) and notebook.notebook_task and notebook.deferrable
    python = bag.dags["databricks_python"]
    assert isinstance(python.get_task("sum_of_squares").job, SparkJob)
    assert isinstance(python.get_task("wait_for_sum"), DatabricksRunSensor)
    assert isinstance(python.get_task("nightly_etl"), DatabricksRunNowOperator)
    jar = bag.dags["databricks_jar"].get_task("spark_pi")
    assert isinstance(jar, DatabricksSubmitRunOperator) and jar.spark_jar_task["main_class_name"]


def test_provider_info_lists_the_databricks_modules_and_link() -> None:
    info = airflow_spark_async.get_provider_info()
    modules = {m for section in ("operators", "sensors", "hooks", "triggers") for e in info[section]
               for m in e["python-modules"]}
    assert {f"airflow_spark_async.databricks.{m}" for m in ("operators", "sensors", "hook", "triggers")} <= modules
    assert "airflow_spark_async.databricks.links.DatabricksJobRunLink" in info["extra-links"]
    trigger = importlib.import_module("airflow_spark_async.databricks.triggers").DatabricksRunTrigger
    assert trigger.serialize(trigger(conn_id="c", job_id="1"))[0] == (
        "airflow_spark_async.databricks.triggers.DatabricksRunTrigger"
    )


@pytest.mark.parametrize("official_installed", [True, False])
def test_the_databricks_connection_type_is_registered_only_without_the_official_provider(
    official_installed: bool,
) -> None:
    # a fresh interpreter, as Airflow's provider discovery runs it: before Airflow is imported
    hide = "" if official_installed else (
        "import importlib.metadata as m\n"
        "real = m.distribution\n"
        "def distribution(name):\n"
        "    if name == 'apache-airflow-providers-databricks':\n"
        "        raise m.PackageNotFoundError(name)\n"
        "    return real(name)\n"
        "m.distribution = distribution\n"
    )
    code = hide + (
        "import sys\n"
        "from airflow_spark_async.databricks import provider_info as p\n"
        "assert 'airflow' not in sys.modules, 'provider_info must not import Airflow'\n"
        "print([c['connection-type'] for c in p.CONNECTION_TYPES])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    registered = out.stdout.strip().splitlines()[-1]
    if official_installed:
        pytest.importorskip("airflow.providers.databricks")
        assert registered == "[]"
    else:
        assert registered == "['databricks']"
