"""Run states read the way Databricks means them, and request bodies the Jobs API accepts.

Every body built here is also checked against databricks-sdk's models (the test server's
validator), so a field the API does not know fails these tests, not a production run.
"""

from __future__ import annotations

from typing import Any

import pytest
from databricks.sdk.service.jobs import JobsAPI

from airflow_spark_async.core.backend import JobState
from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.databricks.compat.arguments import merge_json, run_now_body, submit_body
from airflow_spark_async.databricks.request import attempt_token, spark_job_body
from airflow_spark_async.databricks.runs import Run, RunState, merge_pages, trim
from tests.databricks.conftest import APP, CLUSTER
from tests.servers.databricks_server import validate_body


def _state(life: str, result: str | None = None, **more: Any) -> dict[str, Any]:
    return {"state": {"life_cycle_state": life, **({"result_state": result} if result else {}), **more}}


@pytest.mark.parametrize("life", ["QUEUED", "PENDING", "BLOCKED", "WAITING_FOR_RETRY"])
def test_waiting_life_cycles_are_pending_not_terminal(life: str) -> None:
    state = RunState.parse(_state(life))
    assert state.job_state is JobState.PENDING and not state.is_terminal and state.label == life


@pytest.mark.parametrize("life", ["RUNNING", "TERMINATING"])
def test_running_and_terminating_are_running_not_terminal(life: str) -> None:
    state = RunState.parse(_state(life))
    assert state.job_state is JobState.RUNNING and not state.is_terminal


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ("SUCCESS", JobState.SUCCEEDED),
        ("SUCCESS_WITH_FAILURES", JobState.SUCCEEDED),
        ("FAILED", JobState.FAILED),
        ("TIMEDOUT", JobState.FAILED),
        ("MAXIMUM_CONCURRENT_RUNS_REACHED", JobState.FAILED),
        ("UPSTREAM_FAILED", JobState.FAILED),
        ("EXCLUDED", JobState.FAILED),
        ("DISABLED", JobState.FAILED),
        ("CANCELED", JobState.CANCELLED),
        ("UPSTREAM_CANCELED", JobState.CANCELLED),
        ("SOMETHING_NEW", JobState.FAILED),  # a finished run nobody says succeeded did not
    ],
)
def test_terminated_result_states(result: str, expected: JobState) -> None:
    state = RunState.parse(_state("TERMINATED", result, state_message="msg"))
    assert state.is_terminal and state.job_state is expected and state.label == result
    if result == "SOMETHING_NEW":
        assert "unrecognised result state SOMETHING_NEW" in state.explain()


@pytest.mark.parametrize("life", ["SKIPPED", "INTERNAL_ERROR"])
def test_skipped_and_internal_error_are_failures_that_explain_themselves(life: str) -> None:
    state = RunState.parse(_state(life, state_message="cluster went away"))
    assert state.is_terminal and state.job_state is JobState.FAILED
    assert "cluster went away" in state.explain() and len(state.explain()) > len("cluster went away")


def test_an_unknown_life_cycle_keeps_waiting_and_keeps_its_name() -> None:
    state = RunState.parse(_state("HIBERNATING"))
    assert state.job_state is JobState.PENDING and not state.is_terminal and state.label == "HIBERNATING"


@pytest.mark.parametrize(
    ("status", "life", "result", "job_state"),
    [
        ({"state": "QUEUED", "queue_details": {"message": "max concurrent runs"}}, "QUEUED", None, JobState.PENDING),
        ({"state": "WAITING"}, "WAITING_FOR_RETRY", None, JobState.PENDING),
        ({"state": "BLOCKED"}, "BLOCKED", None, JobState.PENDING),
        ({"state": "TERMINATING"}, "TERMINATING", None, JobState.RUNNING),
        ({"state": "TERMINATED", "termination_details": {"code": "SUCCESS"}}, "TERMINATED", "SUCCESS",
         JobState.SUCCEEDED),
        ({"state": "TERMINATED", "termination_details": {"code": "USER_CANCELED"}}, "TERMINATED", "CANCELED",
         JobState.CANCELLED),
        ({"state": "TERMINATED", "termination_details": {"code": "SKIPPED"}}, "SKIPPED", None, JobState.FAILED),
        ({"state": "TERMINATED", "termination_details": {"code": "DRIVER_ERROR", "message": "OOM"}}, "TERMINATED",
         "FAILED", JobState.FAILED),
    ],
)
def test_the_newer_status_object_alone_is_understood(status: dict[str, Any], life: str, result: str | None,
                                                      job_state: JobState) -> None:
    state = RunState.parse({"status": status})
    assert (state.life_cycle, state.result, state.job_state) == (life, result, job_state)


def test_status_adds_its_termination_code_and_queue_reason_to_the_classic_state() -> None:
    failed = RunState.parse({
        "state": {"life_cycle_state": "TERMINATED", "result_state": "FAILED", "state_message": "Task failed"},
        "status": {"state": "TERMINATED", "termination_details": {"code": "CLUSTER_ERROR", "message": "x"}},
    })
    assert failed.explain() == "[CLUSTER_ERROR] Task failed"
    queued = RunState.parse({"state": {"life_cycle_state": "QUEUED"},
                             "status": {"state": "QUEUED", "queue_details": {"message": "workspace run limit"}}})
    assert queued.queue_reason == "workspace run limit"


def test_only_the_latest_attempt_of_a_retried_task_counts() -> None:
    run = Run.parse({"run_id": 1, **_state("TERMINATED", "SUCCESS"), "tasks": [
        {"task_key": "a", "run_id": 2, "attempt_number": 0, **_state("TERMINATED", "FAILED")},
        {"task_key": "a", "run_id": 3, "attempt_number": 1, **_state("TERMINATED", "SUCCESS")},
        {"task_key": "b", "run_id": 4, **_state("TERMINATED", "FAILED")},
        {"task_key": "c", "run_id": 5, **_state("TERMINATED", "UPSTREAM_FAILED")},
    ]})
    assert run.task_summary() == "a=SUCCESS, b=FAILED, c=UPSTREAM_FAILED"
    assert [t.task_key for t in run.failed_tasks()] == ["b"]  # c only failed because b did


def test_runs_get_pages_are_merged_into_one_run() -> None:
    first = {"run_id": 1, "tasks": [{"task_key": "a"}], "next_page_token": "x", "has_more": True}
    merged = merge_pages(first, [{"run_id": 1, "tasks": [{"task_key": "b"}]}, {"tasks": [{"task_key": "c"}]}])
    assert [t["task_key"] for t in merged["tasks"]] == ["a", "b", "c"] and "next_page_token" not in merged


def test_trim_keeps_the_start_and_the_cause_at_the_end() -> None:
    text = "Traceback\n" + "frame\n" * 2000 + "ZeroDivisionError: division by zero"
    short = trim(text, 500)
    assert len(short) < 600 and short.startswith("Traceback") and short.endswith("division by zero")


# -- tokens ---------------------------------------------------------------------------------------


def test_the_first_try_sends_the_token_verbatim_and_every_retry_its_own() -> None:
    tokens = [attempt_token("user-token", n) for n in range(1, 5)]
    assert tokens[0] == "user-token" and len(set(tokens)) == 4
    assert tokens == [attempt_token("user-token", n) for n in range(1, 5)]  # deterministic


def test_retry_tokens_stay_within_64_characters_and_distinct() -> None:
    base = "x" * 64
    tokens = {attempt_token(base, n) for n in range(2, 200)}
    assert len(tokens) == 198 and all(len(t) <= 64 for t in tokens)


# -- bodies ---------------------------------------------------------------------------------------


def test_named_arguments_override_json_like_the_official_merge() -> None:
    merged = merge_json('{"run_name": "from json", "timeout_seconds": 10}', {"run_name": "named", "tasks": None})
    assert merged == {"run_name": "named", "timeout_seconds": 10}
    assert merge_json("{'run_name': 'rendered from XCom'}", {})["run_name"] == "rendered from XCom"


def test_values_json_cannot_carry_are_rejected_before_submitting() -> None:
    with pytest.raises(ConfigurationError, match=r"json\.tasks\[0\]\.when"):
        merge_json({"tasks": [{"when": object()}]}, {})


def test_a_legacy_single_task_is_folded_into_tasks_the_sdk_accepts() -> None:
    body = submit_body(
        merge_json({"spark_python_task": {"python_file": APP}, "new_cluster": CLUSTER},
                   {"libraries": [{"pypi": {"package": "requests"}}], "timeout_seconds": 600}),
        task_id="my.task id", params={},
    )
    assert body == {
        "run_name": "my.task id",
        "timeout_seconds": 600,
        "tasks": [{"task_key": "my_task_id", "spark_python_task": {"python_file": APP}, "new_cluster": CLUSTER,
                   "libraries": [{"pypi": {"package": "requests"}}]}],
    }
    assert validate_body(JobsAPI.submit, body) == []


@pytest.mark.parametrize(
    ("merged", "message"),
    [
        ({}, "nothing to run"),
        ({"tasks": [{"task_key": "a", "notebook_task": {"notebook_path": "/a"}}], "new_cluster": CLUSTER},
         "not both"),
        ({"tasks": [{"task_key": "a"}]}, "exactly one task block"),
        ({"tasks": [{"task_key": "a", "notebook_task": {}}, {"task_key": "a", "notebook_task": {}}]}, "twice"),
        ({"dbt_task": {"commands": ["dbt run"]}}, "git_source is required"),
        ({"pipeline_task": {"pipeline_name": "p"}}, "pipeline_id"),
    ],
)
def test_bad_submit_arguments_fail_before_anything_is_sent(merged: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        submit_body(merged, task_id="t", params={})


def test_dag_params_fill_empty_notebook_parameters_only() -> None:
    body = submit_body({"tasks": [
        {"task_key": "a", "notebook_task": {"notebook_path": "/a"}},
        {"task_key": "b", "notebook_task": {"notebook_path": "/b", "base_parameters": {"own": "1"}}},
    ]}, task_id="t", params={"date": "2026-01-01"})
    assert body["tasks"][0]["notebook_task"]["base_parameters"] == {"date": "2026-01-01"}
    assert body["tasks"][1]["notebook_task"]["base_parameters"] == {"own": "1"}


def test_run_now_bodies() -> None:
    body = run_now_body({"job_id": "42", "python_params": ["a"]}, params={"p": 1}, forward_dag_params=True)
    assert body == {"job_id": 42, "python_params": ["a"]}  # params not forwarded next to legacy slots
    assert validate_body(JobsAPI.run_now, body) == []
    forwarded = run_now_body({"job_id": 42}, params={"p": "1"}, forward_dag_params=True)
    assert forwarded["job_parameters"] == {"p": "1"}
    for bad, message in [
        ({"job_id": 1, "job_name": "x"}, "not allowed"),
        ({}, "job_id or job_name"),
        ({"job_id": "abc"}, "integer"),
        ({"job_id": 1, "job_parameters": {"a": "1"}, "notebook_params": {"b": "2"}}, "cannot be combined"),
        ({"job_id": 1, "jar_params": ["a"], "notebook_params": {"b": "2"}}, "cannot be given together"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            run_now_body(bad, params={}, forward_dag_params=True)


def test_a_portable_python_job_becomes_a_spark_python_task_on_a_new_cluster() -> None:
    job = SparkJob(application="dbfs:/apps/etl.py", args=["--day", "1"], conf={"spark.sql.shuffle.partitions": "8"},
                   jars=["dbfs:/jars/x.jar"], packages=["org.postgresql:postgresql:42.7.3"],
                   py_files=["dbfs:/wheels/lib-1.0-py3-none-any.whl"], env={"STAGE": "prod"}, num_executors=3,
                   executor_memory="4g", name="etl")
    sized_by_job = {k: v for k, v in CLUSTER.items() if k != "num_workers"}
    body = spark_job_body(job, task_key="etl", new_cluster=sized_by_job)
    task = body["tasks"][0]
    assert task["spark_python_task"] == {"python_file": "dbfs:/apps/etl.py", "parameters": ["--day", "1"]}
    assert task["new_cluster"]["num_workers"] == 3
    assert task["new_cluster"]["spark_conf"] == {"spark.sql.shuffle.partitions": "8", "spark.executor.memory": "4g"}
    assert task["new_cluster"]["spark_env_vars"] == {"STAGE": "prod"}
    assert task["libraries"] == [
        {"jar": "dbfs:/jars/x.jar"},
        {"maven": {"coordinates": "org.postgresql:postgresql:42.7.3"}},
        {"whl": "dbfs:/wheels/lib-1.0-py3-none-any.whl"},
    ]
    assert validate_body(JobsAPI.submit, body) == []


def test_a_portable_jar_job_becomes_a_spark_jar_task_with_its_jar_as_a_library() -> None:
    job = SparkJob(application="dbfs:/jars/app.jar", main_class="com.example.Main", args=["1"])
    body = spark_job_body(job, task_key="jar", existing_cluster_id="0101-abc")
    task = body["tasks"][0]
    assert task["spark_jar_task"] == {"main_class_name": "com.example.Main", "parameters": ["1"]}
    assert task["libraries"] == [{"jar": "dbfs:/jars/app.jar"}] and task["existing_cluster_id"] == "0101-abc"
    assert validate_body(JobsAPI.submit, {**body, "run_name": "x"}) == []


@pytest.mark.parametrize(
    ("job", "kwargs", "message"),
    [
        (SparkJob(application="dbfs:/a.py"), {}, "exactly one of new_cluster"),
        (SparkJob(application="dbfs:/a.py", py_files=["dbfs:/helpers.py"]), {"new_cluster": CLUSTER}, "wheel"),
        (SparkJob(application="dbfs:/a.py", conf={"a": "b"}), {"existing_cluster_id": "c"}, "already exists"),
    ],
)
def test_portable_jobs_that_cannot_run_on_databricks_fail_early(job: SparkJob, kwargs: dict[str, Any],
                                                                 message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        spark_job_body(job, task_key="t", **kwargs)


def test_the_test_server_rejects_what_the_sdk_models_reject() -> None:
    """The validator itself: unknown fields, wrong types and bad enum values are errors."""
    errors = validate_body(JobsAPI.submit, {
        "run_name": 1,
        "spark_python_task": {"python_file": APP},
        "tasks": [{"task_key": "a", "run_if": "SOMETIMES", "new_cluster": {"num_workers": "two", "colour": "red"}}],
    })
    assert any("run_name" in e for e in errors)
    assert any("unknown field 'spark_python_task'" in e for e in errors)
    assert any("run_if" in e for e in errors)
    assert any("num_workers" in e for e in errors) and any("colour" in e for e in errors)
    assert validate_body(JobsAPI.run_now, {"python_params": ["a"]}) == ["missing required field 'job_id'"]
