"""The Databricks backend against the Jobs API test server: auth through databricks-sdk, token
refresh, faults, coalesced polling, paging, life cycles, and failures that explain themselves."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_spark_async.core.backend import JobState
from airflow_spark_async.core.errors import AuthError, ConfigurationError, JobNotFoundError, ServerError
from airflow_spark_async.core.runtime import Watcher
from airflow_spark_async.databricks.backend import DatabricksBackend
from airflow_spark_async.databricks.request import RUN_NOW, DatabricksRun
from airflow_spark_async.databricks.runs import RunState
from tests.databricks.conftest import backend_for, connection, python_task, run
from tests.servers.databricks_server import DatabricksServer, Phase, ServerFault


def submit_request(*tasks: dict[str, Any], name: str = "run", token: str | None = None) -> DatabricksRun:
    body: dict[str, Any] = {"run_name": name, "tasks": list(tasks)}
    if token:
        body["idempotency_token"] = token
    return DatabricksRun(body=body)


async def wait_terminal(backend: DatabricksBackend, run_id: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await backend.status(run_id)
        if status.is_terminal:
            return status
        await asyncio.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish")


@pytest.mark.parametrize("method", ["pat", "oauth", "azure", "basic"])
def test_every_auth_method_submits_and_polls_through_the_sdk(server: DatabricksServer, method: str) -> None:
    conn_id = connection(server, method)

    async def go() -> Any:
        backend = await backend_for(conn_id)
        status = await backend.submit(submit_request(python_task("t")), key=f"asa-{method}", attempt=1)
        return await wait_terminal(backend, status.job_id)

    assert run(go).state is JobState.SUCCEEDED
    assert not server.rejected
    expected_prefix = {"pat": None, "basic": None, "oauth": "oauth", "azure": "aad"}[method]
    if expected_prefix is None:
        assert server.token_requests == []
    else:  # no more than one token per run of go(): the SDK config is shared in the process
        assert server.token_requests and all(t.startswith(expected_prefix) for t in server.token_requests)


def test_a_revoked_oauth_token_is_refreshed_once_and_the_poll_succeeds(server: DatabricksServer) -> None:
    conn_id = connection(server, "oauth")

    async def go() -> tuple[Any, int]:
        backend = await backend_for(conn_id)
        status = await backend.submit(submit_request(python_task("t", seconds=0.2)), key="asa-revoke", attempt=1)
        before = len(server.token_requests)
        server.revoke_tokens()
        # many concurrent polls all get a 401, but the credentials are rebuilt once
        statuses = await asyncio.gather(*(backend.status(status.job_id) for _ in range(8)))
        return statuses[0], len(server.token_requests) - before

    status, new_tokens = run(go)
    assert status.job_id and new_tokens == 1
    assert server.count("GET", "/runs/get") >= 8


def test_a_refused_pat_fails_after_one_refresh(server: DatabricksServer) -> None:
    conn_id = connection(server, password="dapi-wrong")

    with pytest.raises(AuthError, match="401"):
        run(lambda: _status(conn_id, "1"))
    assert server.count("GET", "/runs/get") == 2  # the first try and the one after rebuilding


def test_a_slow_token_endpoint_never_blocks_the_event_loop(server: DatabricksServer) -> None:
    # "localhost" rather than "127.0.0.1": a workspace this process holds no token for yet
    conn_id = connection(server, "oauth", host=f"http://localhost:{server.port}")
    server.token_delay = 1.5
    gaps: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def go() -> None:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        with pytest.raises(JobNotFoundError):
            await _status(conn_id, "999999")
        stop.set()
        await tick

    try:
        run(go)
    finally:
        server.token_delay = 0.0
    assert len(server.token_requests) == 1
    assert sum(gaps) >= 1.4, "the token fetch should have taken the whole delay"
    assert max(gaps) < 0.3, f"the loop stalled for {max(gaps):.2f}s"


def test_wrong_oauth_credentials_are_a_permanent_auth_error(server: DatabricksServer) -> None:
    conn_id = connection(server, "oauth", password="not-the-secret")

    with pytest.raises(AuthError, match="invalid_client"):
        run(lambda: _status(conn_id, "1"))


def test_a_lost_submit_answer_is_resent_with_the_same_token_and_makes_one_run(server: DatabricksServer,
                                                                              pat_conn: str) -> None:
    server.fail(ServerFault(path="/runs/submit", lose_answer=True))

    async def go() -> Any:
        backend = await backend_for(pat_conn, retry_delay=0.05)
        return await backend.submit(submit_request(python_task("t"), token="asa-lost-answer"), key="ignored", attempt=1)

    status = run(go)
    assert server.count("POST", "/runs/submit") == 2
    assert sum(1 for r in server.runs.values() if r.token == "asa-lost-answer") == 1
    assert server.runs[int(status.job_id)].token == "asa-lost-answer"


def test_temporarily_unavailable_and_429_are_retried_honouring_retry_after(server: DatabricksServer,
                                                                           pat_conn: str) -> None:
    server.fail(
        ServerFault(path="/runs/submit"),  # 503 TEMPORARILY_UNAVAILABLE
        ServerFault(429, "REQUEST_LIMIT_EXCEEDED", "Too many requests", path="/runs/submit", retry_after=1),
    )

    async def go() -> tuple[Any, float]:
        backend = await backend_for(pat_conn, retry_delay=0.05)
        started = time.monotonic()
        status = await backend.submit(submit_request(python_task("t"), token="asa-retry"), key="k", attempt=1)
        return status, time.monotonic() - started

    status, elapsed = run(go)
    assert status.job_id and server.count("POST", "/runs/submit") == 3
    assert elapsed >= 1.0, "Retry-After: 1 must be honoured"


def test_polls_are_not_retried_inside_the_backend(server: DatabricksServer, pat_conn: str) -> None:
    """The trigger's loop owns poll back-off; a 503 on runs/get must reach it at once."""
    server.fail(ServerFault(path="/runs/get"))

    async def go() -> None:
        backend = await backend_for(pat_conn)
        await backend.status("1")

    with pytest.raises(ServerError, match="503"):
        run(go)
    assert server.count("GET", "/runs/get") == 1


def test_an_unknown_run_is_job_not_found(server: DatabricksServer, pat_conn: str) -> None:
    async def go() -> None:
        await (await backend_for(pat_conn)).status("424242")

    with pytest.raises(JobNotFoundError, match="does not exist"):
        run(go)
    with pytest.raises(JobNotFoundError, match="not a Databricks run id"):
        run(lambda: _status(pat_conn, "abc"))


async def _status(conn_id: str, run_id: str) -> Any:
    return await (await backend_for(conn_id)).status(run_id)


def test_coalesced_polling_lists_active_runs_and_gets_only_those_that_left(server: DatabricksServer,
                                                                         pat_conn: str) -> None:
    async def go() -> tuple[dict[str, Any], dict[str, Any], int]:
        backend = await backend_for(pat_conn)
        ids = []
        for i in range(6):
            seconds = 0.5 if i < 2 else 30
            status = await backend.submit(submit_request(python_task("t", seconds=seconds)), key=f"asa-c{i}", attempt=1)
            ids.append(status.job_id)
        watcher = Watcher(backend)
        server.clear()
        first = dict(zip(ids, await asyncio.gather(*(watcher.status(j) for j in ids)), strict=True))
        listed_then = server.count("GET", "/runs/list"), server.count("GET", "/runs/get")
        for short in ids[:2]:  # the two short runs finish (however loaded the machine is)
            for _ in range(600):
                if (await backend.status(short)).is_terminal:
                    break
                await asyncio.sleep(0.1)
        server.clear()
        second = dict(zip(ids, await asyncio.gather(*(watcher.status(j) for j in ids)), strict=True))
        for j in ids:
            await backend.cancel(j, key=None)
        return first, second, listed_then

    first, second, (lists, gets) = run(go)
    assert (lists, gets) == (1, 0), "one runs/list answers for six active runs"
    assert server.count("GET", "/runs/list") == 1
    assert server.count("GET", "/runs/get") == 2, "runs/get only for the two runs that left the active list"
    finished = [s for s in second.values() if s.is_terminal]
    assert len(finished) == 2 and all(s.state is JobState.SUCCEEDED for s in finished)
    assert all(not s.is_terminal for s in first.values())


def test_listing_pages_until_every_watched_run_is_found_but_not_forever(server: DatabricksServer,
                                                                      pat_conn: str) -> None:
    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        backend = await backend_for(pat_conn)
        ids = [(await backend.submit(submit_request(python_task("t", seconds=60)), key=f"asa-p{i}", attempt=1)).job_id
               for i in range(60)]
        server.clear()
        oldest_four = await backend.status_many(ids[:4])  # on the third page: 4 // 2 + 1 = 3 pages allowed
        pages_for_four = server.count("GET", "/runs/list")
        server.clear()
        oldest_two = await backend.status_many(ids[:2])  # only 2 pages allowed: not found, asked one by one
        for j in ids:
            await backend.cancel(j, key=None)
        return {"found": oldest_four, "pages": pages_for_four}, {"found": oldest_two}

    four, two = run(go)
    assert len(four["found"]) == 4 and four["pages"] == 3
    assert two["found"] == {} and server.count("GET", "/runs/list") == 2


def test_a_run_with_many_tasks_is_read_across_runs_get_pages() -> None:
    with DatabricksServer(tasks_page_size=2) as paged:
        conn_id = connection(paged)

        async def go() -> Any:
            backend = await backend_for(conn_id)
            tasks = [python_task(f"t{i}", seconds=0.1) for i in range(5)]
            status = await backend.submit(submit_request(*tasks), key="asa-paged", attempt=1)
            return await wait_terminal(backend, status.job_id)

        status = run(go)
        assert status.state is JobState.SUCCEEDED
        assert status.diagnostics == "tasks: t0=SUCCESS, t1=SUCCESS, t2=SUCCESS, t3=SUCCESS, t4=SUCCESS"
        assert any("page_token=" in path for _, path, _ in paged.requests)


def test_a_multi_task_failure_names_each_failed_task_with_its_error(server: DatabricksServer,
                                                                    pat_conn: str) -> None:
    tasks = [
        python_task("ingest", seconds=0.1),
        python_task("transform", seconds=0.1, exit_code=2, depends_on=[{"task_key": "ingest"}]),
        python_task("report", seconds=0.1, depends_on=[{"task_key": "transform"}]),
        python_task("audit", seconds=0.1, exit_code=5),
    ]

    async def go() -> tuple[Any, str | None]:
        backend = await backend_for(pat_conn)
        submitted = await backend.submit(submit_request(*tasks), key="asa-mt", attempt=1)
        status = await wait_terminal(backend, submitted.job_id)
        return status, await backend.logs(status.job_id, tail_lines=20)

    status, logs = run(go)
    assert status.state is JobState.FAILED and status.backend_state == "FAILED"
    assert "task 'transform' failed: RuntimeError: failing on purpose (exit code 2)" in status.message
    assert "task 'audit' failed: RuntimeError: failing on purpose (exit code 5)" in status.message
    assert "task 'report' failed" not in status.message  # it only failed because transform did
    assert "(tasks: ingest=SUCCESS, transform=FAILED, report=UPSTREAM_FAILED, audit=FAILED)" in status.message
    assert "--- task 'transform'" in status.diagnostics and "characters trimmed" in status.diagnostics
    assert logs is not None and logs.index("task transform") < logs.index("task ingest")  # failures first
    assert "failing on purpose" in logs and "sleeping 0.1s" in logs


def test_success_with_failures_is_a_success_that_still_names_the_failed_task(server: DatabricksServer,
                                                                            pat_conn: str) -> None:
    tasks = [
        python_task("flaky", seconds=0.1, exit_code=1),
        python_task("always", seconds=0.1, depends_on=[{"task_key": "flaky"}], run_if="ALL_DONE"),
    ]

    async def go() -> Any:
        backend = await backend_for(pat_conn)
        submitted = await backend.submit(submit_request(*tasks), key="asa-swf", attempt=1)
        return await wait_terminal(backend, submitted.job_id)

    status = run(go)
    assert status.state is JobState.SUCCEEDED and status.backend_state == "SUCCESS_WITH_FAILURES"
    assert "task 'flaky' failed" in status.message


@pytest.mark.parametrize("fields", [("state",), ("status",), ("state", "status")])
def test_a_scripted_life_cycle_is_followed_through_every_state(server: DatabricksServer, pat_conn: str,
                                                               fields: tuple[str, ...]) -> None:
    server.state_fields = fields
    server.script("scripted", [
        Phase("QUEUED", 0.4, queue_reason="Queued due to reaching maximum concurrent runs"),
        Phase("BLOCKED", 0.4), Phase("WAITING_FOR_RETRY", 0.4), Phase("RUNNING", 0.4), Phase("TERMINATING", 0.4),
        Phase("INTERNAL_ERROR", None, message="The cluster was terminated unexpectedly", code="CLOUD_FAILURE"),
    ])

    async def go() -> list[Any]:
        backend = await backend_for(pat_conn)
        seen = [await backend.submit(submit_request(python_task("t"), name="scripted"), key=f"asa-s-{fields}",
                                     attempt=1)]
        while not seen[-1].is_terminal:
            await asyncio.sleep(0.1)
            seen.append(await backend.status(seen[-1].job_id))
        return seen

    seen = run(go)
    labels = list(dict.fromkeys(s.backend_state for s in seen))
    # status alone has no INTERNAL_ERROR life cycle: it says TERMINATED with the code CLOUD_FAILURE
    end = "FAILED" if fields == ("status",) else "INTERNAL_ERROR"
    assert labels == ["QUEUED", "BLOCKED", "WAITING_FOR_RETRY", "RUNNING", "TERMINATING", end]
    assert next(s.state for s in seen if s.backend_state == "TERMINATING") is JobState.RUNNING
    assert seen[0].message == "queued: Queued due to reaching maximum concurrent runs"
    assert seen[-1].state is JobState.FAILED and "The cluster was terminated unexpectedly" in seen[-1].message
    assert "[CLOUD_FAILURE]" in seen[-1].message or fields == ("state",)


def test_cancel_goes_through_terminating_and_a_finished_or_unknown_run_is_no_error(server: DatabricksServer,
                                                                                  pat_conn: str) -> None:
    async def go() -> list[str]:
        backend = await backend_for(pat_conn)
        status = await backend.submit(submit_request(python_task("t", seconds=60)), key="asa-cancel", attempt=1)
        await backend.cancel(status.job_id, key=None)
        seen = [(await backend.status(status.job_id)).backend_state]
        final = await wait_terminal(backend, status.job_id)
        seen.append(final.backend_state)
        await backend.cancel(status.job_id, key=None)  # already finished
        await backend.cancel("777777", key=None)  # unknown
        return seen

    assert run(go) == ["TERMINATING", "CANCELED"]


def test_run_now_by_name_resolves_the_one_job_and_refuses_ambiguity(server: DatabricksServer, pat_conn: str) -> None:
    job_id = server.add_job("Nightly ETL", [python_task("main")])
    server.add_job("Twice", [python_task("main")])
    server.add_job("twice", [python_task("main")])  # names match case-insensitively

    async def go(name: str) -> Any:
        backend = await backend_for(pat_conn)
        body = {"job_name": name, "python_params": ["0.1", "0"]}
        return await backend.submit(DatabricksRun(endpoint=RUN_NOW, body=body), key=f"asa-{name}", attempt=1)

    status = run(lambda: go("nightly etl"))
    assert server.runs[int(status.job_id)].job_id == job_id
    assert server.bodies("/run-now")[-1]["job_id"] == job_id and "job_name" not in server.bodies("/run-now")[-1]
    with pytest.raises(ConfigurationError, match="more than one job"):
        run(lambda: go("TWICE"))
    with pytest.raises(ConfigurationError, match="can not be found"):
        run(lambda: go("no such job"))


def test_cancel_previous_runs_cancels_the_jobs_active_runs_first(server: DatabricksServer, pat_conn: str) -> None:
    job_id = server.add_job("Singleton", [python_task("main")])

    async def go() -> tuple[str, str]:
        backend = await backend_for(pat_conn)
        request = DatabricksRun(endpoint=RUN_NOW, body={"job_id": job_id, "python_params": ["60", "0"]})
        old = await backend.submit(request, key="asa-old", attempt=1)
        new = await backend.submit(DatabricksRun(endpoint=RUN_NOW, body=request.body, cancel_previous_runs=True),
                                   key="asa-new", attempt=1)
        await asyncio.sleep(1.0)
        states = (await backend.status(old.job_id)).backend_state, (await backend.status(new.job_id)).backend_state
        await backend.cancel(new.job_id, key=None)
        return states

    assert run(go) == ("CANCELED", "RUNNING")


def test_the_earlier_tokens_run_is_reattached_when_still_running_else_a_new_run_starts(
    server: DatabricksServer, pat_conn: str
) -> None:
    async def go() -> tuple[str, str, str, str]:
        backend = await backend_for(pat_conn)
        running = await backend.submit(submit_request(python_task("t", seconds=60), token="asa-e.1"), key="k",
                                       attempt=1)
        again = await backend.submit(
            DatabricksRun(body={**submit_request(python_task("t", seconds=60)).body, "idempotency_token": "asa-e.2"},
                          earlier_token="asa-e.1"), key="k", attempt=2)
        done = await backend.submit(submit_request(python_task("t", seconds=0.1), token="asa-f.1"), key="k", attempt=1)
        await wait_terminal(backend, done.job_id)
        fresh = await backend.submit(
            DatabricksRun(body={**submit_request(python_task("t", seconds=0.1)).body, "idempotency_token": "asa-f.2"},
                          earlier_token="asa-f.1"), key="k", attempt=2)
        await backend.cancel(running.job_id, key=None)
        return running.job_id, again.job_id, done.job_id, fresh.job_id

    running, again, done, fresh = run(go)
    assert again == running, "a run of the earlier token that still runs is reattached, not duplicated"
    assert fresh != done, "a finished run of the earlier token is never reported as this try's"


def test_unknown_backend_options_and_bad_retry_settings_are_refused() -> None:
    for options, message in [({"retries": 3}, "unknown"), ({"retry_limit": 0}, "retry_limit"),
                             ({"retry_delay": -1}, "retry_delay"), ({"api_version": "2.0"}, "api_version")]:
        with pytest.raises(ConfigurationError, match=message):
            DatabricksBackend.validate_options(options)


def test_the_classic_state_is_preferred_over_status_when_both_are_present() -> None:
    state = RunState.parse({"state": {"life_cycle_state": "RUNNING"},
                            "status": {"state": "TERMINATED", "termination_details": {"code": "SUCCESS"}}})
    assert state.life_cycle == "RUNNING"


@pytest.mark.parametrize("method", ["pat", "basic"])
def test_pat_and_basic_headers_are_exactly_what_databricks_sdk_builds(server: DatabricksServer, method: str) -> None:
    """They are built without importing the SDK (2-7 s per task process); they must not differ."""
    import json
    import os

    from airflow.sdk import Connection

    from airflow_spark_async.databricks.compat.connection import settings_from_connection

    conn_id = connection(server, method)
    conn = Connection(conn_id=conn_id, **json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"]))
    settings = settings_from_connection(conn)
    assert settings.static_auth() == settings.build_config().authenticate()


def test_a_service_principal_oauth_flag_that_is_neither_true_nor_false_is_refused(server: DatabricksServer) -> None:
    """It used to fall back to basic auth silently, sending the client secret as a password."""
    conn_id = connection(server, "oauth", extra={"service_principal_oauth": "sometimes"})

    with pytest.raises(ConfigurationError, match="service_principal_oauth must be true or false"):
        run(lambda: _status(conn_id, "1"))
    assert server.count("GET", "/runs/get") == 0


def test_a_throttled_submit_closes_the_workspaces_gate_for_every_later_call(server: DatabricksServer,
                                                                           pat_conn: str) -> None:
    """The 429 of one submit slows every submit and cancel of that workspace and identity."""
    server.fail(ServerFault(429, "REQUEST_LIMIT_EXCEEDED", "Too many requests", path="/runs/submit", retry_after=1))

    async def go() -> tuple[int, str]:
        from airflow_spark_async.core.runtime import Runtime

        backend = await backend_for(pat_conn, retry_delay=0.05)
        status = await backend.submit(submit_request(python_task("t")), key="asa-gate", attempt=1)
        await backend.cancel(status.job_id, key=None)
        return Runtime.current().gate(backend.identity()).throttles, status.job_id

    throttles, job_id = run(go)
    assert throttles == 1 and job_id


def test_listing_answers_an_id_that_is_no_run_id_with_its_own_error(server: DatabricksServer, pat_conn: str) -> None:
    async def go() -> Any:
        backend = await backend_for(pat_conn)
        status = await backend.submit(submit_request(python_task("t", seconds=60)), key="asa-mixed", attempt=1)
        server.clear()
        listed = await backend.status_many([status.job_id, "not-a-run"])
        await backend.cancel(status.job_id, key=None)
        return status.job_id, listed

    job_id, listed = run(go)
    assert listed[job_id].state in (JobState.PENDING, JobState.RUNNING)
    assert isinstance(listed["not-a-run"], JobNotFoundError)
    assert server.count("GET", "/runs/list") == 1


def test_the_test_button_lists_runs_with_the_connections_credentials(server: DatabricksServer) -> None:
    from airflow_spark_async.databricks.hook import DatabricksAsyncHook

    ok, message = DatabricksAsyncHook(connection(server)).test_connection()
    assert ok and message == f"Databricks workspace {server.url} answered (pat auth)"
    assert server.count("GET", "/runs/list") == 1
    ok, message = DatabricksAsyncHook(connection(server, password="dapi-not-the-token")).test_connection()
    assert not ok and "AuthError" in message
