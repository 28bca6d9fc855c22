"""A DAG written for the official Databricks operators runs with only its imports changed.

The DAG below uses the official provider's argument names and shapes — ``json`` merged with
named arguments, the legacy top-level task fields, ``job_name`` for run-now, ``deferrable``,
``polling_period_seconds``, XCom keys ``run_id`` and ``run_page_url`` read downstream. It is
first built with the official provider (installed for comparison only), proving it is a
genuine official DAG; then its import line is swapped for ours and it runs under
``airflow dags test`` — the real task runner, deferral and in-process triggerer — against the
Jobs API test server, whose request validation would reject any body it does not know.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.servers.databricks_server import DatabricksServer

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_IMPORT = "from airflow.providers.databricks.operators.databricks import"
OUR_IMPORT = "from airflow_spark_async.databricks import"

OFFICIAL_DAG = '''
from datetime import datetime

from airflow.sdk import DAG, task
from airflow.providers.databricks.operators.databricks import DatabricksRunNowOperator, DatabricksSubmitRunOperator

new_cluster = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 2}

with DAG("official_databricks_dag", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    notebook = DatabricksSubmitRunOperator(
        task_id="notebook_task",
        new_cluster=new_cluster,
        notebook_task={"notebook_path": "/Users/someone@example.com/PrepareData",
                       "base_parameters": {"date": "{{ ds }}"}},
        polling_period_seconds=1,
        deferrable=True,
    )
    spark_jar = DatabricksSubmitRunOperator(
        task_id="spark_jar_task",
        json={
            "new_cluster": new_cluster,
            "spark_jar_task": {"main_class_name": "com.example.ProcessData"},
            "libraries": [{"jar": "dbfs:/lib/etl-0.1.jar"}],
        },
        run_name="jar {{ ds }}",
        timeout_seconds=3600,
        polling_period_seconds=1,
        databricks_retry_limit=5,
        databricks_retry_delay=2,
    )
    python = DatabricksSubmitRunOperator(
        task_id="spark_python_task",
        existing_cluster_id="0923-164208-meows279",
        spark_python_task={"python_file": "dbfs:/scripts/etl.py", "parameters": ["--date", "{{ ds }}"]},
        libraries=[{"pypi": {"package": "requests==2.32.3"}}],
        polling_period_seconds=1,
        deferrable=True,
    )
    run_now = DatabricksRunNowOperator(
        task_id="run_now",
        job_name="Nightly ETL",
        notebook_params={"dry-run": "true", "oldest-time-to-consider": "1457570074236"},
        polling_period_seconds=1,
        deferrable=True,
    )

    @task
    def check(databricks_run_id, page):
        assert int(databricks_run_id) > 0 and page.startswith("http"), (databricks_run_id, page)

    checked = check(
        "{{ ti.xcom_pull(task_ids='notebook_task', key='run_id') }}",
        "{{ ti.xcom_pull(task_ids='notebook_task', key='run_page_url') }}",
    )
    notebook >> spark_jar >> python >> run_now >> checked
'''


def test_the_dag_is_a_genuine_official_dag() -> None:
    pytest.importorskip("airflow.providers.databricks")
    namespace: dict[str, Any] = {}
    exec(compile(OFFICIAL_DAG, "official_dag.py", "exec"), namespace)
    dag = namespace["dag"]
    assert {type(t).__module__ for t in dag.tasks if t.task_id != "check"} == {
        "airflow.providers.databricks.operators.databricks"
    }


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    home = tmp_path_factory.mktemp("official-dag-home")
    (home / "dags").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"), PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return home, env


def test_the_official_dag_runs_with_only_the_imports_changed(airflow_home: tuple[Path, dict[str, str]]) -> None:
    home, env = airflow_home
    assert OFFICIAL_DAG.count(OFFICIAL_IMPORT) == 1
    (home / "dags" / "official_dag.py").write_text(OFFICIAL_DAG.replace(OFFICIAL_IMPORT, OUR_IMPORT))
    with DatabricksServer() as server:
        job_id = server.add_job("Nightly ETL", [{"task_key": "etl", "existing_cluster_id": "c",
                                                 "notebook_task": {"notebook_path": "/Jobs/etl"}}])
        env = {**env, "AIRFLOW_CONN_DATABRICKS_DEFAULT": json.dumps(
            {"conn_type": "databricks", "host": server.url, "password": server.pat})}
        result = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "official_databricks_dag"],
                                env=env, capture_output=True, text=True, timeout=600)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-5000:]
        assert server.rejected == [], "every request must match databricks-sdk's models"
        submits = server.bodies("/runs/submit")
        run_now = server.bodies("/run-now")

    with sqlite3.connect(home / "airflow.db") as db:
        states = dict(db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = 'official_databricks_dag'"))
        xcom_keys = {row for row in db.execute(
            "SELECT task_id, key FROM xcom WHERE dag_id = 'official_databricks_dag' AND key IN ('run_id', "
            "'run_page_url')")}
    assert states == dict.fromkeys(["notebook_task", "spark_jar_task", "spark_python_task", "run_now", "check"],
                                   "success"), output[-5000:]
    assert {(t, k) for t in ("notebook_task", "spark_jar_task", "spark_python_task", "run_now")
            for k in ("run_id", "run_page_url")} <= xcom_keys

    by_name = {b["run_name"]: b for b in submits}
    notebook = by_name["notebook_task"]["tasks"][0]
    assert notebook["task_key"] == "notebook_task" and notebook["new_cluster"]["num_workers"] == 2
    assert notebook["notebook_task"]["base_parameters"]["date"].count("-") == 2  # {{ ds }} rendered
    jar = next(b for name, b in by_name.items() if name.startswith("jar "))
    assert jar["timeout_seconds"] == 3600 and jar["tasks"][0]["libraries"] == [{"jar": "dbfs:/lib/etl-0.1.jar"}]
    assert by_name["spark_python_task"]["tasks"][0]["existing_cluster_id"] == "0923-164208-meows279"
    assert run_now == [{"job_id": job_id, "idempotency_token": run_now[0]["idempotency_token"],
                        "notebook_params": {"dry-run": "true", "oldest-time-to-consider": "1457570074236"}}]
