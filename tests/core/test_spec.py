"""One mapping of a SparkJob to Spark properties and to a spark-submit command line (core/spec.py)."""

from __future__ import annotations

import shlex

from airflow_spark_async.core.spec import (
    EXECUTOR_ENV,
    FILE_FIELDS,
    K8S_DRIVER_ENV,
    RESOURCE_FIELDS,
    YARN_DRIVER_ENV,
    SparkJob,
)


def _job(**overrides: object) -> SparkJob:
    fields: dict[str, object] = {
        "application": "s3://bucket/app.jar",
        "main_class": "com.example.Main",
        "args": ["--day", "2024-01-01"],
        "conf": {"spark.sql.shuffle.partitions": "8"},
        "jars": ["a.jar", "b.jar"],
        "py_files": ["deps.zip"],
        "files": ["f.txt"],
        "archives": ["env.tar.gz#env"],
        "packages": ["org.x:y:1.0"],
        "name": "daily",
        "driver_memory": "1g",
        "driver_cores": 1,
        "executor_memory": "2g",
        "executor_cores": 2,
        "num_executors": 3,
        "env": {"MODE": "prod"},
    }
    fields.update(overrides)
    return SparkJob(**fields)  # type: ignore[arg-type]


def test_every_field_becomes_the_property_spark_submit_would_set() -> None:
    assert _job().spark_properties() == {
        "spark.app.name": "daily",
        "spark.driver.memory": "1g",
        "spark.driver.cores": "1",
        "spark.executor.memory": "2g",
        "spark.executor.cores": "2",
        "spark.executor.instances": "3",
        "spark.jars": "a.jar,b.jar",
        "spark.submit.pyFiles": "deps.zip",
        "spark.files": "f.txt",
        "spark.archives": "env.tar.gz#env",
        "spark.jars.packages": "org.x:y:1.0",
        "spark.sql.shuffle.partitions": "8",
    }


def test_unset_fields_set_no_property() -> None:
    assert SparkJob(application="app.py").spark_properties() == {}


def test_the_users_own_conf_wins_over_the_mapped_fields() -> None:
    job = _job(conf={"spark.executor.memory": "8g", "spark.app.name": "mine"})
    props = job.spark_properties()
    assert props["spark.executor.memory"] == "8g" and props["spark.app.name"] == "mine"


def test_a_backend_leaves_out_what_its_request_has_fields_for() -> None:
    props = _job().spark_properties(exclude=("name", *RESOURCE_FIELDS, *FILE_FIELDS))
    assert props == {"spark.jars.packages": "org.x:y:1.0", "spark.sql.shuffle.partitions": "8"}


def test_env_goes_under_each_prefix_asked_for_and_nowhere_else() -> None:
    job = _job()
    assert not any("MODE" in prop for prop in job.spark_properties())
    props = job.spark_properties(env_prefixes=(YARN_DRIVER_ENV, K8S_DRIVER_ENV, EXECUTOR_ENV))
    assert {k: v for k, v in props.items() if "MODE" in k} == {
        "spark.yarn.appMasterEnv.MODE": "prod",
        "spark.kubernetes.driverEnv.MODE": "prod",
        "spark.executorEnv.MODE": "prod",
    }


def test_spark_submit_args_are_the_command_line_command_runner_runs() -> None:
    args = _job().spark_submit_args(deploy_mode="cluster", env_prefixes=(YARN_DRIVER_ENV,))
    assert args == [
        "--deploy-mode", "cluster",
        "--class", "com.example.Main",
        "--name", "daily",
        "--jars", "a.jar,b.jar",
        "--py-files", "deps.zip",
        "--files", "f.txt",
        "--archives", "env.tar.gz#env",
        "--packages", "org.x:y:1.0",
        "--conf", "spark.driver.memory=1g",
        "--conf", "spark.driver.cores=1",
        "--conf", "spark.executor.memory=2g",
        "--conf", "spark.executor.cores=2",
        "--conf", "spark.executor.instances=3",
        "--conf", "spark.yarn.appMasterEnv.MODE=prod",
        "--conf", "spark.sql.shuffle.partitions=8",
        "s3://bucket/app.jar", "--day", "2024-01-01",
    ]


def test_a_python_job_needs_no_flags_beyond_the_script_and_its_args() -> None:
    job = SparkJob(application="s3://b/main.py", args=["x y"])
    assert job.spark_submit_args() == ["s3://b/main.py", "x y"]
    assert job.spark_submit_options() == []


def test_a_name_in_conf_is_not_overridden_by_the_name_flag() -> None:
    options = _job(conf={"spark.app.name": "mine"}).spark_submit_options()
    assert "--name" not in options and "spark.app.name=mine" in options
    assert shlex.split(shlex.join(options)) == options, "safe to join for sparkSubmitParameters"
