"""The Spark standalone example DAGs import cleanly, and the README's one runs to its checked
answer under ``dag.test()`` on the local cluster (the operator defers; the trigger runs in-process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_compat import dag_bag
from tests.conftest import spark_conn_json, standalone_conn_json

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("spark_standalone_*.py")), ids=lambda p: p.stem)
def test_every_standalone_example_imports_cleanly(path: Path) -> None:
    bag = dag_bag(str(path))
    assert bag.import_errors == {}
    assert bag.dags and all(dag.tasks for dag in bag.dags.values())


@pytest.mark.cluster
@pytest.mark.parametrize(("dag_file", "dag_id"), [
    ("spark_standalone_sum_of_squares.py", "spark_standalone_sum_of_squares"),
    ("spark_standalone_migrated_from_spark_submit.py", "spark_standalone_migrated_from_spark_submit"),
])
def test_the_sum_of_squares_examples_compute_their_checked_answer(
    dag_file: str, dag_id: str, spark_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's example (a ``spark_standalone`` connection) and the one migrated from the official
    ``SparkSubmitOperator`` (a ``spark`` connection: the master on its RPC port, ``deploy-mode`` and
    ``rest-port`` extras)."""
    from airflow.configuration import conf
    from airflow.utils import db

    db.initdb()
    # dag.test() runs only a DAG of the dags folder (it must be serialized): link the example and its apps
    folder = Path(conf.get("core", "dags_folder"))
    folder.mkdir(parents=True, exist_ok=True)
    for name in (dag_file, "spark_apps"):
        if not (folder / name).exists():
            (folder / name).symlink_to(EXAMPLES / name)
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_STANDALONE_DEFAULT", standalone_conn_json(
        spark_cluster.rest_url, spark_cluster.ui_url, spark_cluster.master_url))
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", spark_conn_json(
        spark_cluster.rest_url, spark_cluster.ui_url, spark_cluster.master_url))
    monkeypatch.setenv("SPARK_ASYNC_OUTPUT_DIR", str(tmp_path))  # read when the DAG file is parsed
    dag = dag_bag(str(folder / dag_file)).dags[dag_id]
    run = dag.test(run_conf={"n": 20000})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    [result] = tmp_path.glob("*.json")
    assert json.loads(result.read_text())["sum_of_squares"] == 20000 * 20001 * 40001 // 6
