"""The local Spark standalone cluster helper, against real JVMs.

One cluster (on free ports, in a temporary workdir) serves the whole module because starting it costs
seconds; the last test stops it with a cluster-mode driver still running, which is the case that matters:
drivers are children of the worker, and a stop that forgets them leaves JVMs (and Python processes)
behind on a developer's laptop or a CI runner.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

pytest.importorskip("pyspark")

from airflow_spark_async_devtools.local_cluster import (
    HOST,
    LocalClusterError,
    LocalSparkCluster,
    PortInUseError,
    main,
)

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.timeout(300),
    pytest.mark.skipif(sys.platform == "win32", reason="spark-class is a bash script"),
    pytest.mark.skipif(
        not (os.environ.get("JAVA_HOME") or shutil.which("java")), reason="needs Java 17+ (JAVA_HOME or PATH)"
    ),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSparkCluster]:
    local = LocalSparkCluster.with_free_ports(tmp_path_factory.mktemp("spark-cluster"), worker_memory="1g")
    with local:
        yield local


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def _post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _java_processes_of(workdir: Path) -> list[psutil.Process]:
    """JVMs of one cluster: daemons, drivers and executors all carry ``<workdir>/conf`` on their classpath."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and os.path.basename(cmdline[0]) == "java" and str(workdir) in " ".join(cmdline):
            found.append(proc)
    return found


def test_started_cluster_is_healthy_and_loopback_only(cluster: LocalSparkCluster) -> None:
    status = cluster.status()

    assert status.healthy, status.problems
    assert (status.master_state, status.alive_workers, status.rest_ready) == ("ALIVE", 1, True)
    assert (status.master_url, status.rest_url, status.ui_url, status.worker_ui_url) == (
        cluster.master_url,
        cluster.rest_url,
        cluster.ui_url,
        cluster.worker_ui_url,
    )
    assert cluster.master_url == f"spark://127.0.0.1:{cluster.master_port}"
    state = _get_json(f"{cluster.ui_url}/json/")
    assert state["status"] == "ALIVE"
    assert state["url"] == cluster.master_url
    assert [w["webuiaddress"] for w in state["workers"]] == [cluster.worker_ui_url]
    assert _get_json(f"{cluster.rest_url}/v1/submissions/readyz")["success"] is True
    # The REST server takes unauthenticated submissions: nothing may listen beyond loopback.
    for pid in (status.master_pid, status.worker_pid):
        assert pid is not None
        listening = [
            c.laddr.ip for c in psutil.Process(pid).net_connections() if c.status == psutil.CONN_LISTEN
        ]
        assert listening
        assert {ip.removeprefix("::ffff:") for ip in listening} == {HOST}


def test_start_is_idempotent(cluster: LocalSparkCluster) -> None:
    before = cluster.status()

    began = time.monotonic()
    again = cluster.start()
    adopted = LocalSparkCluster.from_workdir(cluster.workdir).start()

    assert time.monotonic() - began < 10
    for status in (again, adopted):
        assert status.already_running
        assert status.healthy
        assert (status.master_pid, status.worker_pid) == (before.master_pid, before.worker_pid)
    with pytest.raises(LocalClusterError, match="other ports is already running"):
        LocalSparkCluster.with_free_ports(cluster.workdir).start()


def test_cli_status(cluster: LocalSparkCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--workdir", str(cluster.workdir), "--json"]) == 0
    reported = json.loads(capsys.readouterr().out)
    assert reported["healthy"] is True
    assert reported["rest_url"] == cluster.rest_url

    assert main(["status", "--workdir", str(tmp_path)]) == 1
    assert "not running" in capsys.readouterr().out


def test_taken_port_is_a_clear_error_and_starts_nothing(
    cluster: LocalSparkCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A second cluster colliding with the running one's master port.
    clashing = LocalSparkCluster.with_free_ports(tmp_path / "clash")
    clashing.master_port = cluster.master_port
    with pytest.raises(
        PortInUseError, match=rf"Port {cluster.master_port} \(master RPC\) on 127.0.0.1 is already in use"
    ):
        clashing.start()

    # Any listener on the REST port, via the CLI.
    with socket.socket() as squatter:
        squatter.bind((HOST, 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        workdir = tmp_path / "cli"
        assert (
            main(["start", "--workdir", str(workdir), "--rest-port", str(taken), "--master-port", "0"]) == 2
        )
        assert "must be between 1 and 65535" in capsys.readouterr().err
        blocked = LocalSparkCluster.with_free_ports(workdir)
        args = ["--master-port", str(blocked.master_port), "--ui-port", str(blocked.ui_port)]
        args += ["--worker-ui-port", str(blocked.worker_ui_port), "--rest-port", str(taken)]
        assert main(["start", "--workdir", str(workdir), *args]) == 2
    err = capsys.readouterr().err
    assert f"Port {taken} (REST submission server) on 127.0.0.1 is already in use" in err
    assert "--rest-port" in err
    for path in (tmp_path / "clash", workdir):
        assert not (path / "master.log").exists(), "no JVM may be started when a port is taken"
        assert not (path / "cluster.json").exists()


def test_stop_when_nothing_runs(tmp_path: Path) -> None:
    idle = LocalSparkCluster(workdir=tmp_path)
    assert idle.stop() is False
    assert not idle.status().running


def test_stop_kills_daemons_and_running_drivers(cluster: LocalSparkCluster, tmp_path: Path) -> None:
    """Last on purpose: stops the module's cluster while a cluster-mode Python driver is running."""
    started_file = tmp_path / "started"
    app = tmp_path / "sleeper.py"
    app.write_text(
        "import pathlib, sys, time\n"
        f"pathlib.Path({str(started_file)!r}).write_text(sys.executable)\n"
        "time.sleep(600)\n"
    )
    created = _post_json(
        f"{cluster.rest_url}/v1/submissions/create",
        {
            "action": "CreateSubmissionRequest",
            "clientSparkVersion": "4.0.0",
            "appResource": f"file://{app}",
            "mainClass": "org.apache.spark.deploy.PythonRunner",
            "appArgs": [f"file://{app}", ""],
            "sparkProperties": {"spark.app.name": "sleeper", "spark.submit.deployMode": "cluster"},
        },
    )
    assert created["success"], created
    deadline = time.monotonic() + 60
    while not started_file.exists():
        assert time.monotonic() < deadline, "driver did not start"
        time.sleep(0.2)
    # The driver's Python is the interpreter running the tests (PYSPARK_PYTHON in the worker's env).
    assert started_file.read_text() == sys.executable

    status = cluster.status()
    assert status.master_pid is not None and status.worker_pid is not None
    driver_tree = psutil.Process(status.worker_pid).children(recursive=True)
    assert {"java", "python"} <= {p.name().rstrip("0123456789.") for p in driver_tree}, driver_tree
    pids = [status.master_pid, status.worker_pid, *(p.pid for p in driver_tree)]
    assert len(_java_processes_of(cluster.workdir)) >= 3  # master, worker, driver

    began = time.monotonic()
    assert cluster.stop() is True
    stop_seconds = time.monotonic() - began

    assert [pid for pid in pids if not _gone(pid)] == []
    assert _java_processes_of(cluster.workdir) == []
    assert not (cluster.workdir / "master.pid").exists()
    assert not (cluster.workdir / "worker.pid").exists()
    assert not cluster.status().running
    assert cluster.stop() is False
    assert stop_seconds < cluster.stop_timeout
