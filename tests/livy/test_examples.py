"""The Livy example DAGs import cleanly and say what they claim; the provider lists the Livy parts."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import airflow_spark_async
from airflow_spark_async.livy import provider_info
from airflow_spark_async.livy.operators import LivyBatchOperator
from airflow_spark_async.livy.sensors import LivyBatchSensor
from tests.airflow_compat import dag_bag

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("livy_*.py")), ids=lambda p: p.stem)
def test_every_livy_example_imports_cleanly_without_the_official_provider(path: Path) -> None:
    bag = dag_bag(str(path))
    assert bag.import_errors == {}
    [dag] = bag.dags.values()
    assert dag.tasks
    assert "airflow.providers.apache.livy" not in path.read_text().split('"""', 2)[2]


def test_the_migrated_example_keeps_the_official_meaning_of_its_arguments() -> None:
    dag = dag_bag(str(EXAMPLES / "livy_migrated_from_official.py")).dags["livy_migrated_from_official"]
    pi, submit_report, wait_for_report = (dag.get_task(t) for t in ("pi", "submit_report", "wait_for_report"))
    assert isinstance(pi, LivyBatchOperator) and isinstance(submit_report, LivyBatchOperator)
    assert isinstance(wait_for_report, LivyBatchSensor)
    assert submit_report.submit_only is True
    assert pi.submit_only is False and pi.poll_interval == 30
    assert sorted(wait_for_report.target_states or ()) == ["dead", "error", "killed", "success"]


def test_provider_info_lists_the_livy_modules_links_and_connection() -> None:
    info = airflow_spark_async.get_provider_info()
    modules = {m for section in ("operators", "sensors", "hooks", "triggers") for e in info[section]
               for m in e["python-modules"]}
    assert {"airflow_spark_async.livy.operators", "airflow_spark_async.livy.sensors", "airflow_spark_async.livy.hook",
            "airflow_spark_async.livy.triggers"} <= modules
    assert "airflow_spark_async.livy.links.LivySparkUILink" in info["extra-links"]
    # the official provider is installed here, and owns the ``livy`` type (test_package.py checks the other case)
    assert [c for c in info["connection-types"] if c["connection-type"] == "livy"] == []
    assert provider_info.LIVY_FORM["hook-class-name"] == "airflow_spark_async.livy.hook.LivyHook"


def test_the_trigger_class_path_stored_in_users_databases_resolves() -> None:
    module = importlib.import_module("airflow_spark_async.livy.triggers")
    assert module.LivyBatchTrigger.backend_class.name == "livy"
    from airflow_spark_async.livy import LivyBatchTrigger

    assert LivyBatchOperator.trigger_class is LivyBatchSensor.trigger_class is LivyBatchTrigger
