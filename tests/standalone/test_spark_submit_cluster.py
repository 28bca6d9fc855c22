"""A DAG written for the official ``SparkSubmitOperator`` runs on the real local cluster with only its
import changed: templated ``application_args`` and ``conf``, ``jars`` and ``packages`` (resolved from a
Maven repository on disk), ``env_vars``, read from an official ``spark`` connection (port 7077, extras
``deploy-mode`` and ``rest-port``); the operator defers and ``dag.test()`` runs the trigger."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_compat import dag_bag
from tests.conftest import spark_conn_json

APPS = Path(__file__).resolve().parents[1] / "apps"
OFFICIAL_IMPORT = "from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator"
OURS = "from airflow_spark_async.spark_submit import SparkSubmitOperator"

#: as a user wrote it for apache-airflow-providers-apache-spark; the test changes only the import
OFFICIAL_DAG = f'''
from datetime import datetime

from airflow.sdk import DAG, task

{OFFICIAL_IMPORT}

with DAG(dag_id="spark_submit_migrated", schedule=None, start_date=datetime(2026, 1, 1),
         params={{"day": "2026-01-01", "partitions": 7}}) as dag:
    probe = SparkSubmitOperator(
        task_id="probe",
        application="{{{{ var.value.probe_app }}}}",
        application_args=["{{{{ var.value.probe_out }}}}", "asa.JarMarker", "asa.PkgMarker", "--",
                          "--day", "{{{{ params.day }}}}", "{{{{ ti.task_id }}}}"],
        conf={{"spark.sql.shuffle.partitions": "{{{{ params.partitions }}}}",
               "spark.jars.ivySettings": "{{{{ var.value.ivy_settings }}}}",
               "spark.jars.ivy": "{{{{ var.value.ivy_home }}}}"}},
        jars="{{{{ var.value.marker_jar }}}}",
        packages="org.asa:pkg-marker:1.0",
        env_vars={{"PROBE_TZ": "UTC"}},
        executor_memory="512m",
        driver_memory="512m",
        total_executor_cores=1,
        name="migrated-probe",
        status_poll_interval=2,
    )

    @task
    def downstream(pushed=None):
        return pushed

    downstream(probe.output)
'''


def _jar(workdir: Path, class_name: str, jar: Path) -> None:
    """A jar holding one class ``asa.<class_name>``, built with the machine's JDK."""
    src = workdir / class_name / "asa" / f"{class_name}.java"
    src.parent.mkdir(parents=True)
    src.write_text(f"package asa; public class {class_name} {{ public static String hello() {{ return \"hi\"; }} }}")
    subprocess.run(["javac", "--release", "17", str(src)], check=True, timeout=300)
    jar.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["jar", "cf", str(jar), "-C", str(workdir / class_name), "asa"], check=True, timeout=300)


def _maven_repo(root: Path, workdir: Path) -> Path:
    """A Maven repository on disk holding ``org.asa:pkg-marker:1.0``, and Ivy settings that resolve
    from it alone (no network)."""
    base = root / "org" / "asa" / "pkg-marker" / "1.0"
    _jar(workdir, "PkgMarker", base / "pkg-marker-1.0.jar")
    (base / "pkg-marker-1.0.pom").write_text(textwrap.dedent("""\
        <project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
        <groupId>org.asa</groupId><artifactId>pkg-marker</artifactId><version>1.0</version></project>"""))
    settings = workdir / "ivysettings.xml"
    settings.write_text(textwrap.dedent(f"""\
        <ivysettings><settings defaultResolver="disk"/>
          <resolvers><ibiblio name="disk" m2compatible="true" root="{root.as_uri()}"/></resolvers>
        </ivysettings>"""))
    return settings


@pytest.mark.cluster
def test_a_dag_written_for_the_official_operator_runs_with_only_its_import_changed(
    spark_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.configuration import conf
    from airflow.utils import db

    db.initdb()
    marker_jar = tmp_path / "jars" / "jar-marker.jar"
    _jar(tmp_path / "build", "JarMarker", marker_jar)
    ivy_settings = _maven_repo(tmp_path / "m2", tmp_path / "build")
    out = tmp_path / "probe.json"
    for name, value in {"probe_app": f"file://{APPS / 'classpath_probe.py'}", "probe_out": str(out),
                        "ivy_settings": str(ivy_settings), "ivy_home": str(tmp_path / "ivy"),
                        "marker_jar": marker_jar.as_uri()}.items():
        monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)
    # the official connection: the master's URL and RPC port, the REST server's port as an extra; YARN's
    # queue extra (Airflow's default spark_default has one) is ignored on a standalone master, as by spark-submit
    conn = json.loads(spark_conn_json(spark_cluster.rest_url, spark_cluster.ui_url, spark_cluster.master_url))
    conn["extra"]["queue"] = "root.default"
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps(conn))
    source = OFFICIAL_DAG.replace(OFFICIAL_IMPORT, OURS)
    assert source.count(OURS) == 1 and OFFICIAL_IMPORT not in source  # the one change
    folder = Path(conf.get("core", "dags_folder"))
    folder.mkdir(parents=True, exist_ok=True)
    dag_file = folder / "spark_submit_migrated_test.py"
    dag_file.write_text(source)
    try:
        dag = dag_bag(str(dag_file)).dags["spark_submit_migrated"]
        run = dag.test(run_conf={"day": "2026-12-05", "partitions": 5})
        tis = {ti.task_id: ti for ti in run.get_task_instances()}
        assert run.state == "success", {task: ti.state for task, ti in tis.items()}
        assert tis["probe"].xcom_pull(task_ids="probe", key="job_id").startswith("driver-")
    finally:
        dag_file.unlink()
    got = json.loads(out.read_text())
    assert got["args"] == ["--day", "2026-12-05", "probe"]  # templated application_args
    assert got["partitions"] == "5"  # templated conf
    assert got["app_name"].startswith("migrated-probe [")  # the name, with the task's key appended
    assert got["loaded"] == {"asa.JarMarker": True, "asa.PkgMarker": True}, got  # jars and packages
    assert got["env"] == {"PROBE_TZ": "UTC"}
    assert any(jar.endswith("/jar-marker.jar") for jar in got["jars"]), got["jars"]
