"""The standalone backend against a real local Spark cluster: real drivers that compute,
fail, get killed, or cannot start — and the sensor that waits on them."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from airflow_spark_async.core.airflow_versions import TaskDeferred
from airflow_spark_async.core.backend import JobState
from airflow_spark_async.core.errors import JobNotFoundError
from airflow_spark_async.core.http import close_loop_sessions
from airflow_spark_async.core.operator import SparkJobFailed
from airflow_spark_async.core.runtime import get_backend
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.standalone.backend import StandaloneBackend, build_create_request
from airflow_spark_async.standalone.hook import StandaloneSettings
from airflow_spark_async.standalone.sensors import SparkStandaloneDriverSensor
from tests.conformance.harness import FakeTI, run_trigger
from tests.conftest import APPS, standalone_conn_json

EXAMPLE_APP = Path(__file__).parents[2] / "example_dags" / "spark_apps" / "sum_of_squares.py"
CONN = "standalone_real"
T = TypeVar("T")


@pytest.fixture(scope="module", autouse=True)
def _connection(spark_cluster: Any) -> Iterator[None]:
    os.environ[f"AIRFLOW_CONN_{CONN.upper()}"] = standalone_conn_json(
        spark_cluster.rest_url, spark_cluster.ui_url, spark_cluster.master_url
    )
    yield
    del os.environ[f"AIRFLOW_CONN_{CONN.upper()}"]


def run(make: Callable[[StandaloneBackend], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            backend = await get_backend(StandaloneBackend, CONN, {})
            assert isinstance(backend, StandaloneBackend)
            return await make(backend)
        finally:
            await close_loop_sessions()

    return asyncio.run(go())


def wait_for(job_id: str, states: set[str], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run(lambda b: b.status(job_id))
        if status.backend_state in states:
            return status
        time.sleep(0.5)
    raise AssertionError(f"{job_id} never reached {states}")


def test_a_real_pyspark_job_computes_the_checked_answer(tmp_path: Path) -> None:
    output = tmp_path / "result.json"
    job = SparkJob(application=f"file://{EXAMPLE_APP}", args=["20000", str(output)], driver_memory="512m",
                   conf={"spark.cores.max": "1"})
    submitted = run(lambda b: b.submit(job, key="asa-real-compute"))
    final = wait_for(submitted.job_id, {"FINISHED", "FAILED", "ERROR"}, timeout=180)
    assert final.state is JobState.SUCCEEDED, final
    n = 20000
    assert json.loads(output.read_text())["sum_of_squares"] == n * (n + 1) * (2 * n + 1) // 6
    tail = run(lambda b: b.logs(submitted.job_id, tail_lines=50))
    assert tail and "sum_of_squares=" in tail


def test_a_driver_that_exits_non_zero_fails_with_its_traceback_in_the_log() -> None:
    job = SparkJob(application=f"file://{APPS}/sleep_then_exit.py", args=["0", "7"])
    submitted = run(lambda b: b.submit(job, key="asa-real-fail"))
    final = wait_for(submitted.job_id, {"FAILED", "FINISHED"})
    assert final.state is JobState.FAILED and "non-zero" in (final.message or "")
    tail = run(lambda b: b.logs(submitted.job_id, tail_lines=200)) or ""
    assert "failing on purpose with exit code 7" in tail
    assert "User application exited with 7" in tail


def test_a_killed_driver_ends_killed() -> None:
    job = SparkJob(application=f"file://{APPS}/sleep_then_exit.py", args=["120"])
    submitted = run(lambda b: b.submit(job, key="asa-real-kill"))
    wait_for(submitted.job_id, {"RUNNING"})

    async def kill_and_look(b: StandaloneBackend) -> JobState:
        await b.cancel(submitted.job_id, key="asa-real-kill")
        return (await b.status(submitted.job_id)).state

    # Right after the kill was requested the driver is being killed (the master may still say RUNNING):
    # never a job to reattach to.
    assert run(kill_and_look) in (JobState.CANCELLING, JobState.CANCELLED)
    assert wait_for(submitted.job_id, {"KILLED"}).state is JobState.CANCELLED
    run(lambda b: b.cancel(submitted.job_id))  # cancelling twice is not an error


def test_the_masters_json_cannot_map_a_key_to_a_driver(spark_cluster: Any) -> None:
    """Why standalone keeps a ledger (docs/standalone.md): the key travels in spark.app.name, but the
    master lists drivers without any name and applications without their driver — and a driver that has
    not created its SparkContext has no application at all. If a Spark release ever lists the name with
    the driver, this test fails and the backend can look keys up."""
    key = f"asa-{uuid.uuid4().hex[:24]}-1"
    job = SparkJob(application=f"file://{APPS}/sleep_then_exit.py", args=["20"], name="keyed")
    submitted = run(lambda b: b.submit(job, key=key))
    try:
        wait_for(submitted.job_id, {"RUNNING"})
        with urllib.request.urlopen(f"{spark_cluster.ui_url}/json/", timeout=10) as resp:
            state = json.load(resp)
        [driver] = [d for d in state["activedrivers"] if d["id"] == submitted.job_id]
        assert key not in json.dumps(driver) and "keyed" not in json.dumps(driver)
        assert set(driver) <= {"id", "starttime", "state", "cores", "memory", "resources", "submitdate", "worker",
                               "mainclass"}
        # this driver creates no SparkContext, so no application names it either
        assert all(key not in json.dumps(app) for app in state["activeapps"])
    finally:
        run(lambda b: b.cancel(submitted.job_id))


def test_a_missing_application_is_an_error_with_the_masters_explanation() -> None:
    job = SparkJob(application="file:///no/such/dir/app.py")
    submitted = run(lambda b: b.submit(job, key="asa-real-missing"))
    final = wait_for(submitted.job_id, {"ERROR", "FAILED"})
    assert final.state is JobState.FAILED
    assert "NoSuchFileException" in (final.message or "") or "app.py" in (final.message or "")


def test_an_unknown_driver_is_not_found_not_polled_forever() -> None:
    with pytest.raises(JobNotFoundError, match="does not know"):
        run(lambda b: b.status("driver-20000101000000-9999"))


def test_the_masters_json_lists_many_drivers_in_one_request() -> None:
    job = SparkJob(application=f"file://{APPS}/sleep_then_exit.py", args=["0"])
    ids = [run(lambda b, i=i: b.submit(job, key=f"asa-many-{i}")).job_id for i in range(3)]  # type: ignore[misc]
    for job_id in ids:
        wait_for(job_id, {"FINISHED"})
    listed = run(lambda b: b.status_many([*ids, "driver-unknown"]))
    assert set(listed) == set(ids)
    assert all(s.state is JobState.SUCCEEDED for s in listed.values())


def test_sensor_defers_and_succeeds_on_a_finished_driver_without_killing_it() -> None:
    job = SparkJob(application=f"file://{APPS}/sleep_then_exit.py", args=["3"])
    job_id = run(lambda b: b.submit(job, key="asa-sensor-ok")).job_id
    sensor = SparkStandaloneDriverSensor(task_id="wait", job_id=job_id, conn_id=CONN, poke_interval=1)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"ti": FakeTI()})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert trigger.serialize()[1]["owns_job"] is False
    [event] = run_trigger(trigger)  # type: ignore[arg-type]
    assert sensor.execute_complete({"ti": FakeTI()}, event) == job_id  # type: ignore[arg-type]


def test_sensor_fails_on_a_failed_driver_and_pokes_without_deferral() -> None:
    job = SparkJob(application=f"file://{APPS}/sleep_then_exit.py", args=["0", "2"])
    job_id = run(lambda b: b.submit(job, key=f"asa-sensor-bad-{uuid.uuid4().hex[:6]}")).job_id
    wait_for(job_id, {"FAILED"})
    sensor = SparkStandaloneDriverSensor(task_id="wait", job_id=job_id, conn_id=CONN, poke_interval=1,
                                         deferrable=False)
    with pytest.raises(SparkJobFailed, match="FAILED"):
        sensor.poke({"ti": FakeTI()})  # type: ignore[arg-type]


def test_create_request_maps_the_portable_spec() -> None:
    settings = StandaloneSettings("http://m:6066", "http://m:8080", "spark://m:7077")
    job = SparkJob(
        application="file:///a/app.py", args=["x"], py_files=["file:///a/lib.zip"], jars=["file:///a/x.jar"],
        packages=["org:art:1"], driver_memory="1g", executor_cores=2, num_executors=3, name="etl",
        conf={"spark.driver.memory": "3g"}, env={"K": "V"},
    )
    body = build_create_request(job, key="asa-k", settings=settings)
    assert body["mainClass"] == "org.apache.spark.deploy.PythonRunner"
    assert body["appArgs"] == ["file:///a/app.py", "file:///a/lib.zip", "x"]
    props = body["sparkProperties"]
    assert props["spark.app.name"] == "etl [asa-k]" and props["spark.submit.deployMode"] == "cluster"
    assert props["spark.driver.memory"] == "3g", "conf wins over the convenience fields"
    assert props["spark.jars"] == "file:///a/x.jar" and props["spark.jars.packages"] == "org:art:1"
    assert props["spark.executor.instances"] == "3" and props["spark.executor.cores"] == "2"
    assert body["environmentVariables"]["K"] == "V"
    jar = build_create_request(SparkJob("file:///a/x.jar", main_class="org.Main", args=["1"]), key="k",
                               settings=settings)
    assert jar["mainClass"] == "org.Main" and jar["appArgs"] == ["1"]


def test_a_jar_without_main_class_is_refused_before_submitting() -> None:
    from airflow_spark_async.core.errors import ConfigurationError

    settings = StandaloneSettings("http://m:6066", "http://m:8080", "spark://m:7077")
    with pytest.raises(ConfigurationError, match="main_class"):
        build_create_request(SparkJob("file:///a/app.jar"), key="k", settings=settings)
