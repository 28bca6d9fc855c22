"""The EMR parts as Airflow sees them: provider info, trigger class paths, example DAGs."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import airflow_spark_async
from airflow_spark_async.emr.operators import EmrAddStepsOperator, EmrStepsOperator
from airflow_spark_async.emr.sensors import EmrJobFlowSensor, EmrStepSensor
from tests.airflow_compat import dag_bag

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"


@pytest.mark.parametrize(
    "path",
    [
        "airflow_spark_async.emr.triggers.EmrStepsTrigger",
        "airflow_spark_async.emr.triggers.EmrClusterTrigger",
        "airflow_spark_async.emr.triggers.EmrServerlessJobTrigger",
    ],
)
def test_trigger_class_paths_stored_in_users_databases_resolve(path: str) -> None:
    module, _, name = path.rpartition(".")
    assert isinstance(getattr(importlib.import_module(module), name), type)


def test_provider_info_lists_the_emr_modules_and_links_and_no_aws_connection_type() -> None:
    info = airflow_spark_async.get_provider_info()
    sections = ("operators", "sensors", "triggers")
    modules = {m for section in sections for entry in info[section] for m in entry["python-modules"]}
    assert {"airflow_spark_async.emr.operators", "airflow_spark_async.emr.sensors",
            "airflow_spark_async.emr.triggers"} <= modules
    assert "airflow_spark_async.emr.links.EmrServerlessDashboardLink" in info["extra-links"]
    assert "aws" not in {c["connection-type"] for c in info["connection-types"]}, "the amazon provider owns 'aws'"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("emr_*.py")), ids=lambda p: p.stem)
def test_every_emr_example_imports_cleanly_without_the_official_provider(path: Path) -> None:
    bag = dag_bag(str(path))
    assert bag.import_errors == {}
    [dag] = bag.dags.values()
    assert dag.tasks
    assert "airflow.providers.amazon" not in path.read_text()


def test_the_pipeline_example_cleans_up_however_the_step_ends() -> None:
    dag = dag_bag(str(EXAMPLES / "emr_create_step_terminate.py")).dags["emr_create_step_terminate"]
    remove = dag.get_task("remove_cluster")
    assert remove.is_teardown and remove.trigger_rule == "all_done_setup_success"
    assert dag.get_task("create_cluster").is_setup
    assert isinstance(dag.get_task("add_step"), EmrAddStepsOperator)
    assert isinstance(dag.get_task("wait_for_cluster"), EmrJobFlowSensor)
    assert isinstance(dag.get_task("wait_for_step"), EmrStepSensor)
    step = dag_bag(str(EXAMPLES / "emr_spark_step.py")).dags["emr_spark_step"].get_task("spark_pi")
    assert isinstance(step, EmrStepsOperator) and step.deferrable and step.poll_interval >= 5
