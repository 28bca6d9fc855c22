"""The parts of ``./dev stack`` that need no running stack: ports, the local spark-submit of an
emulated job, the "port busy" refusal. Fast: they start nothing but a listening socket."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_spark_async_devtools.stack.config import DEFAULT_PORTS, Ports
from airflow_spark_async_devtools.stack.spark_submit import local_livy_request, pi_py, spark_submit_argv

MASTER = "spark://127.0.0.1:7077"


def test_the_fixed_ports_do_not_clash_and_keep_8080_for_airflow() -> None:
    ports = DEFAULT_PORTS.to_dict()
    assert len(set(ports.values())) == len(ports)
    assert ports["airflow"] == 8080 and ports["spark_ui"] != 8080
    from airflow_spark_async_devtools.local_cluster import LocalSparkCluster

    assert LocalSparkCluster().ui_port == DEFAULT_PORTS.spark_ui, "./dev cluster and the stack agree"


def test_a_port_override_is_checked() -> None:
    assert DEFAULT_PORTS.with_overrides(["livy=9998"]).livy == 9998
    with pytest.raises(ValueError, match="NAME=PORT"):
        DEFAULT_PORTS.with_overrides(["nope=1"])
    with pytest.raises(ValueError, match="share"):
        DEFAULT_PORTS.with_overrides([f"livy={DEFAULT_PORTS.airflow}"])


def test_spark_pi_from_the_examples_jar_runs_as_pysparks_pi_py() -> None:
    step = ["--deploy-mode", "cluster", "--class", "org.apache.spark.examples.SparkPi", "--conf",
            "spark.executor.memory=2g", "file:///usr/lib/spark/examples/jars/spark-examples.jar", "100"]
    argv = spark_submit_argv(step, MASTER)
    assert argv is not None
    assert argv[-2:] == [str(pi_py()), "100"]
    assert "--class" not in argv and "cluster" not in argv
    assert argv[argv.index("--master") + 1] == MASTER and argv[argv.index("--deploy-mode") + 1] == "client"
    assert "spark.executor.memory=2g" in argv and "spark.cores.max=1" in argv


def test_a_local_application_runs_as_it_is_and_a_remote_one_not_at_all(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("print('hi')\n")
    argv = spark_submit_argv(["--conf", "spark.cores.max=2", f"file://{app}", "a", "--b"], MASTER)
    assert argv is not None and argv[-3:] == [str(app), "a", "--b"]
    assert "spark.cores.max=1" not in argv, "the job's own setting wins"
    sized = spark_submit_argv(["--conf", "spark.executor.cores=2", str(app)], MASTER)
    assert sized is not None and "spark.cores.max=2" in sized, "room for one executor of the size asked for"
    assert spark_submit_argv(["s3://bucket/app.py"], MASTER) is None
    assert spark_submit_argv(["--class", "com.example.Main", "file:///nowhere/app.jar"], MASTER) is None
    assert local_livy_request({"file": "hdfs:///jobs/report.py"}) is None
    pi = local_livy_request({"file": "/opt/spark/examples/jars/spark-examples.jar",
                             "className": "org.apache.spark.examples.SparkPi", "args": [100]})
    assert pi == {"file": str(pi_py()), "args": [100]}


def test_up_refuses_a_busy_port_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "airflow_spark_async_devtools.stack", "--state-dir", str(tmp_path), "up",
             "--free-ports", "--port", f"livy={port}"],
            capture_output=True, text=True, timeout=120, check=False,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"127.0.0.1:{port} (Livy emulator) is already in use" in result.stderr
    assert "--port livy=<free port>" in result.stderr
    assert not (tmp_path / "run").exists(), "nothing was started"


def test_free_ports_are_all_different() -> None:
    ports = Ports.free().to_dict()
    assert len(set(ports.values())) == len(ports)
