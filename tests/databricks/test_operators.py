"""The Databricks operators and sensor driven the way Airflow drives them (execute → defer →
serialize/rebuild the trigger → run it → execute_complete) against the Jobs API test server."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_spark_async.core.airflow_versions import TaskDeferred
from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.ledger import MemoryLedger
from airflow_spark_async.core.operator import SparkJobFailed
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.databricks.operators import DatabricksRunNowOperator, DatabricksSubmitRunOperator
from airflow_spark_async.databricks.sensors import DatabricksRunSensor
from tests.conformance.harness import FakeTI, defer, rebuild, run_to_end, run_trigger
from tests.databricks.conftest import APP, CLUSTER, cancel, connection, notebook_task, python_task, ti
from tests.servers.databricks_server import DatabricksServer


def submit_op(conn_id: str, ledger: MemoryLedger, task_id: str = "task", **kwargs: Any) -> DatabricksSubmitRunOperator:
    kwargs.setdefault("spark_python_task", {"python_file": APP, "parameters": ["0.3", "0"]})
    kwargs.setdefault("new_cluster", CLUSTER)
    return DatabricksSubmitRunOperator(task_id=task_id, databricks_conn_id=conn_id, polling_period_seconds=0.5,
                                       deferrable=True, ledger=ledger, **kwargs)


def test_the_official_xcoms_and_run_page_link_are_pushed_before_deferring(server: DatabricksServer, pat_conn: str,
                                                                         ledger: MemoryLedger) -> None:
    task = ti()
    trigger = defer(submit_op(pat_conn, ledger), task)
    run_id = int(trigger.job_id)
    assert task.xcoms["run_id"] == run_id and isinstance(task.xcoms["run_id"], int)
    assert task.xcoms["run_page_url"].endswith(f"#job/submit/run/{run_id}")
    assert task.xcoms["job_id"] == str(run_id)
    body = server.bodies("/runs/submit")[-1]
    assert body["run_name"] == "task" and body["tasks"][0]["task_key"] == "task" and not server.rejected
    run_trigger(rebuild(trigger))


def test_do_xcom_push_false_keeps_run_id_out_of_xcom(pat_conn: str, ledger: MemoryLedger) -> None:
    task = ti()
    trigger = defer(submit_op(pat_conn, ledger, do_xcom_push=False), task)
    assert "run_id" not in task.xcoms
    run_trigger(rebuild(trigger))


def test_a_retry_after_a_failed_run_with_a_user_token_starts_a_new_run_bug_64828(
    server: DatabricksServer, pat_conn: str, ledger: MemoryLedger
) -> None:
    """The official provider sends the user's token again on retry; Databricks answers with the
    earlier (failed) run, and the retry reports it as its own outcome. Here the retry sends a
    token of its own and watches a run that really ran again."""
    first = ti(try_number=1)
    with pytest.raises(SparkJobFailed, match="failing on purpose"):
        run_to_end(submit_op(pat_conn, ledger, idempotency_token="nightly-2026-01-01",
                             spark_python_task={"python_file": APP, "parameters": ["0.2", "3"]}), first)
    failed_run = first.xcoms["run_id"]
    retry = FakeTI(task_id=first.task_id, run_id=first.run_id, try_number=2)
    _result, events = run_to_end(submit_op(pat_conn, ledger, idempotency_token="nightly-2026-01-01"), retry)
    assert retry.xcoms["run_id"] != failed_run and events[0]["status"] == "success"
    tokens = [b["idempotency_token"] for b in server.bodies("/runs/submit")]
    assert tokens == ["nightly-2026-01-01", "nightly-2026-01-01.2"]
    # what the official retry gets: Databricks answers a reused token with the earlier, failed run
    assert _submit_directly(server, {"run_name": "again", "idempotency_token": "nightly-2026-01-01",
                                     "tasks": [python_task("t")]}) == failed_run


def _submit_directly(server: DatabricksServer, body: dict[str, Any]) -> int:
    import json
    import urllib.request

    request = urllib.request.Request(f"{server.url}/api/2.2/jobs/runs/submit", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {server.pat}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return int(json.load(resp)["run_id"])


def test_a_worker_dying_between_submit_and_record_is_reattached_not_duplicated(
    server: DatabricksServer, pat_conn: str, ledger: MemoryLedger
) -> None:
    first = ti(try_number=1)
    trigger = defer(submit_op(pat_conn, ledger, spark_python_task={"python_file": APP, "parameters": ["30", "0"]}),
                    first)
    # the worker died after Databricks accepted the run but before the run id was recorded: the
    # ledger holds only the intent the core wrote before submitting
    from airflow_spark_async.core.backend import job_key, parse_key
    from airflow_spark_async.core.ledger import LedgerEntry, write_entry

    key = job_key(first.dag_id, first.task_id, first.run_id)
    write_entry(ledger, parse_key(key).family, "databricks", LedgerEntry(key=key))  # type: ignore[union-attr]
    runs_before = len(server.runs)
    retry = FakeTI(task_id=first.task_id, run_id=first.run_id, try_number=2)
    again = defer(submit_op(pat_conn, ledger, spark_python_task={"python_file": APP, "parameters": ["30", "0"]}),
                  retry)
    assert again.job_id == trigger.job_id and len(server.runs) == runs_before
    first_token = job_key(first.dag_id, first.task_id, first.run_id)
    assert [b["idempotency_token"] for b in server.bodies("/runs/submit")][-2:] == [first_token, first_token]
    cancel(again)


def test_wait_for_termination_false_returns_after_submitting(server: DatabricksServer, pat_conn: str,
                                                             ledger: MemoryLedger) -> None:
    task = ti()
    op = submit_op(pat_conn, ledger, wait_for_termination=False,
                   spark_python_task={"python_file": APP, "parameters": ["30", "0"]})
    run_id = op.execute({"ti": task})  # type: ignore[arg-type]
    assert run_id == str(task.xcoms["run_id"]) and server.life_cycle(run_id) in ("PENDING", "RUNNING")
    assert ledger.entries == {}, "nothing left behind for a later try to reattach to"


def test_notebook_exit_values_go_to_xcom(server: DatabricksServer, pat_conn: str, ledger: MemoryLedger) -> None:
    one = ti()
    run_to_end(submit_op(pat_conn, ledger, spark_python_task=None, new_cluster=None,
                         notebook_task={"notebook_path": "/Shared/report",
                                        "base_parameters": {"seconds": "0.2", "result": '{"rows": 42}'}},
                         existing_cluster_id="0101-abc"), one)
    assert one.xcoms["notebook_output"] == '{"rows": 42}'
    many = ti()
    run_to_end(submit_op(pat_conn, ledger, spark_python_task=None, new_cluster=None, tasks=[
        notebook_task("a", seconds=0.2, result="first"),
        notebook_task("b", seconds=0.2, result="second", depends_on=[{"task_key": "a"}]),
        python_task("c", seconds=0.2),
    ]), many)
    assert many.xcoms["notebook_output"] == {"a": "first", "b": "second"}


def test_a_failed_multi_task_run_fails_the_task_naming_each_failed_task(pat_conn: str, ledger: MemoryLedger,
                                                                        capfd: pytest.CaptureFixture[str]) -> None:
    op = submit_op(pat_conn, ledger, spark_python_task=None, new_cluster=None, tasks=[
        python_task("extract", seconds=0.2),
        python_task("load", seconds=0.2, exit_code=4, depends_on=[{"task_key": "extract"}]),
        notebook_task("publish", seconds=0.2, exit_code=7),
    ])
    with pytest.raises(SparkJobFailed) as failure:
        run_to_end(op, ti())
    text = str(failure.value)
    assert "task 'load' failed: RuntimeError: failing on purpose (exit code 4)" in text
    assert "task 'publish' failed: RuntimeError: failing on purpose (exit code 7)" in text
    assert "tasks: extract=SUCCESS, load=FAILED, publish=FAILED" in text
    out = capfd.readouterr().out
    assert "----- task load" in out and "Traceback (most recent call last)" in out


def test_a_portable_spark_job_runs_as_a_spark_python_task(server: DatabricksServer, pat_conn: str,
                                                          ledger: MemoryLedger) -> None:
    op = DatabricksSubmitRunOperator(task_id="portable", databricks_conn_id=pat_conn, ledger=ledger, deferrable=True,
                                     polling_period_seconds=0.5, new_cluster=CLUSTER,
                                     job=SparkJob(application=APP, args=["0.2", "0"], conf={"spark.x": "1"}))
    _result, events = run_to_end(op, ti("portable"))
    body = server.bodies("/runs/submit")[-1]
    assert body["tasks"][0]["spark_python_task"] == {"python_file": APP, "parameters": ["0.2", "0"]}
    assert body["tasks"][0]["new_cluster"]["spark_conf"] == {"spark.x": "1"}
    assert body["run_name"] == "conformance.portable" and events[0]["status"] == "success"


def test_job_and_databricks_task_arguments_together_are_refused(pat_conn: str) -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        DatabricksSubmitRunOperator(task_id="x", databricks_conn_id=pat_conn, job=SparkJob(application=APP),
                                    notebook_task={"notebook_path": "/a"})


def test_repair_run_is_refused_at_parse_time_rather_than_silently_ignored() -> None:
    with pytest.raises(ConfigurationError, match="repair_run"):
        DatabricksRunNowOperator(task_id="x", job_id=1, repair_run=True)


def test_an_unsupported_auth_method_fails_before_anything_is_submitted(server: DatabricksServer,
                                                                      ledger: MemoryLedger) -> None:
    conn_id = connection(server, extra={"use_azure_managed_identity": True}, password=None, login=None)
    with pytest.raises(ConfigurationError, match="managed identity"):
        submit_op(conn_id, ledger).execute({"ti": ti()})  # type: ignore[arg-type]
    assert server.count("POST", "/runs/submit") == 0


def test_dag_params_reach_notebooks_and_run_now_job_parameters(server: DatabricksServer, pat_conn: str,
                                                               ledger: MemoryLedger) -> None:
    context_params = {"ti": ti(), "params": {"day": "2026-01-01", "unset": None}}
    op = submit_op(pat_conn, ledger, spark_python_task=None, new_cluster=None,
                   notebook_task={"notebook_path": "/Shared/n"}, existing_cluster_id="c")
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context_params)  # type: ignore[arg-type]
    assert server.bodies("/runs/submit")[-1]["tasks"][0]["notebook_task"]["base_parameters"] == {"day": "2026-01-01"}
    cancel(deferred.value.trigger)
    job_id = server.add_job("params job", [notebook_task("main")])
    run_now = DatabricksRunNowOperator(task_id="rn", job_id=str(job_id), databricks_conn_id=pat_conn, ledger=ledger,
                                       deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        run_now.execute({"ti": ti("rn"), "params": {"day": "2026-01-02"}})  # type: ignore[arg-type]
    assert server.bodies("/run-now")[-1]["job_parameters"] == {"day": "2026-01-02"}
    assert server.bodies("/run-now")[-1]["job_id"] == job_id
    cancel(deferred.value.trigger)


def test_deferrable_false_runs_the_same_loop_on_the_worker(pat_conn: str, ledger: MemoryLedger) -> None:
    op = submit_op(pat_conn, ledger)
    op.deferrable = False
    task = ti()
    assert op.execute({"ti": task}) == str(task.xcoms["run_id"])  # type: ignore[arg-type]


def test_the_run_sensor_waits_in_the_triggerer_and_judges_the_end(server: DatabricksServer, pat_conn: str,
                                                                  ledger: MemoryLedger) -> None:
    ok = submit_op(pat_conn, ledger, wait_for_termination=False).execute({"ti": ti()})  # type: ignore[arg-type]
    bad = submit_op(pat_conn, ledger, wait_for_termination=False,
                    spark_python_task={"python_file": APP, "parameters": ["0.3", "2"]}).execute(
        {"ti": ti()})  # type: ignore[arg-type]
    for run_id, expect_success in ((ok, True), (bad, False)):
        sensor = DatabricksRunSensor(task_id="wait", run_id=run_id, databricks_conn_id=pat_conn, poke_interval=0.5)
        trigger = defer(sensor, ti("wait"))  # type: ignore[arg-type]
        assert trigger.owns_job is False, "a sensor never cancels the run it watches"
        events = run_trigger(rebuild(trigger))
        if expect_success:
            assert sensor.execute_complete({"ti": ti("wait")}, events[0]) == run_id  # type: ignore[arg-type]
        else:
            with pytest.raises(SparkJobFailed, match="FAILED"):
                sensor.execute_complete({"ti": ti("wait")}, events[0])  # type: ignore[arg-type]


def test_the_run_sensor_can_wait_for_a_run_to_start(server: DatabricksServer, pat_conn: str,
                                                    ledger: MemoryLedger) -> None:
    run_id = submit_op(pat_conn, ledger, wait_for_termination=False,
                       spark_python_task={"python_file": APP, "parameters": ["30", "0"]}).execute(
        {"ti": ti()})  # type: ignore[arg-type]
    poking = DatabricksRunSensor(task_id="started", run_id=run_id, databricks_conn_id=pat_conn, poke_interval=0.3,
                                 target_states=["RUNNING"], deferrable=False)
    assert poking.poke({}) is False  # type: ignore[arg-type]  # still PENDING right after submitting
    deferring = DatabricksRunSensor(task_id="started", run_id=run_id, databricks_conn_id=pat_conn,
                                    poke_interval=0.3, target_states=["RUNNING"])
    events = run_trigger(rebuild(defer(deferring, ti("started"))))  # type: ignore[arg-type]
    assert events[0]["backend_state"] == "RUNNING" and events[0]["status"] == "success"
    assert poking.poke({}) is True  # type: ignore[arg-type]
    assert server.life_cycle(run_id) == "RUNNING", "the sensor did not cancel the run"
    cancel(deferring.trigger_class(conn_id=pat_conn, job_id=run_id))
