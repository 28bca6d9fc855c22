"""Databricks against the Jobs API test server: per-run-instance tokens, cancelling runs, who polls
with which credentials, and a PAT rotated while its run is watched.

Each test proves one rule of the exactly-once contract (docs/concepts.md) on Databricks' side.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import math
import os
import time
import uuid
from typing import Any

import pytest

from airflow_spark_async.core.airflow_versions import TaskDeferred
from airflow_spark_async.core.backend import JobState
from airflow_spark_async.core.http import MAX_RETRY_AFTER, close_loop_sessions
from airflow_spark_async.core.ledger import MemoryLedger
from airflow_spark_async.core.trigger import SparkJobTrigger
from airflow_spark_async.databricks.backend import DatabricksBackend
from airflow_spark_async.databricks.operators import DatabricksSubmitRunOperator
from airflow_spark_async.databricks.runs import RunState
from tests.conformance.harness import FakeTI, rebuild, run_trigger
from tests.databricks.conftest import APP, CLUSTER, backend_for, connection, python_task, run
from tests.databricks.test_backend import submit_request
from tests.servers.databricks_server import DatabricksServer


@dataclasses.dataclass
class FakeDagRun:
    """What the key reads from a DAG run: the instant it started (what tells a re-created run apart)."""

    start_date: dt.datetime


def _operator(conn_id: str, ledger: MemoryLedger, seconds: float = 0.3) -> DatabricksSubmitRunOperator:
    return DatabricksSubmitRunOperator(task_id="task", databricks_conn_id=conn_id, polling_period_seconds=0.3,
                                       deferrable=True, ledger=ledger, new_cluster=CLUSTER,
                                       spark_python_task={"python_file": APP, "parameters": [f"{seconds:g}", "0"]})


def _defer(op: DatabricksSubmitRunOperator, ti: FakeTI, dag_run: FakeDagRun) -> SparkJobTrigger:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": ti, "dag_run": dag_run})  # type: ignore[arg-type]
    return deferred.value.trigger  # type: ignore[return-value]


def test_a_dag_run_deleted_and_recreated_with_the_same_run_id_sends_new_tokens_and_gets_a_new_run(
        server: DatabricksServer, pat_conn: str, ledger: MemoryLedger) -> None:
    """#64828 across DAG runs: the same run id (a re-run backfill, a re-triggered manual run) must not
    send the same idempotency token, or Databricks hands back the weeks-old run as this one."""
    run_id = f"backfill__{uuid.uuid4().hex[:8]}"
    first_start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    first = FakeTI(task_id="task", run_id=run_id)
    trigger = _defer(_operator(pat_conn, ledger), first, FakeDagRun(first_start))
    [event] = run_trigger(rebuild(trigger))
    assert event["status"] == "success"
    first_token = server.bodies("/runs/submit")[-1]["idempotency_token"]

    recreated = FakeTI(task_id="task", run_id=run_id)  # the same run id, try 1 again: a new DAG run
    again = _defer(_operator(pat_conn, ledger), recreated, FakeDagRun(first_start + dt.timedelta(days=20)))
    second_token = server.bodies("/runs/submit")[-1]["idempotency_token"]
    assert second_token != first_token, "a new DAG run instance sends a token of its own"
    assert again.job_id != trigger.job_id, "Databricks started a new run instead of handing back the old one"
    assert server.life_cycle(again.job_id) not in ("SUCCESS", "FAILED"), "the new run really runs"
    run_trigger(rebuild(again))


def test_a_run_being_cancelled_is_cancelling_but_terminating_after_its_work_is_not(
        server: DatabricksServer, pat_conn: str) -> None:
    async def go() -> list[JobState]:
        backend = await backend_for(pat_conn)
        status = await backend.submit(submit_request(python_task("t", seconds=30), name="cancelled"), key="asa-c",
                                      attempt=1)
        await backend.cancel(status.job_id, key=None)
        seen: list[JobState] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = (await backend.status(status.job_id)).state
            seen.append(state)
            if state.is_terminal:
                return seen
            await asyncio.sleep(0.05)
        raise AssertionError(f"run {status.job_id} did not end: {seen}")

    seen = run(go)
    assert JobState.CANCELLING in seen and seen[-1] is JobState.CANCELLED
    assert JobState.RUNNING not in seen[seen.index(JobState.CANCELLING):], "once cancelling, never running again"
    finishing = RunState.parse({"state": {"life_cycle_state": "TERMINATING", "user_cancelled_or_timedout": False}})
    assert finishing.job_state is JobState.RUNNING, "TERMINATING alone is a run cleaning up after its work"


def test_identity_tells_credentials_apart_without_holding_them(server: DatabricksServer) -> None:
    other = "dapi-team-b-token"
    server.other_pats.add(other)
    team_a, team_b = connection(server), connection(server, password=other)

    async def go() -> tuple[str, str, str]:
        a, b, a_again = await backend_for(team_a), await backend_for(team_b), await backend_for(connection(server))
        return a.identity(), b.identity(), a_again.identity()

    a, b, a_again = run(go)
    assert a != b, "two principals on one workspace: two identities, two watchers"
    assert a == a_again, "two connections with the same credentials may share"
    assert a.startswith(server.url) and b.startswith(server.url)
    assert all(secret not in ident for secret in (server.pat, other) for ident in (a, b))


def test_two_triggers_with_different_tokens_on_one_host_are_polled_with_their_own(server: DatabricksServer,
                                                                                 ledger: MemoryLedger) -> None:
    other = "dapi-team-b-token"
    server.other_pats.add(other)
    conns = {server.pat: connection(server), other: connection(server, password=other)}
    triggers = {token: rebuild(_defer(_operator(conn_id, ledger, seconds=1.5), FakeTI(run_id=f"r{token}"),
                                      FakeDagRun(dt.datetime.now(dt.timezone.utc))))
                for token, conn_id in conns.items()}
    server.clear()

    async def both() -> list[list[dict[str, Any]]]:
        async def one(trigger: SparkJobTrigger) -> list[dict[str, Any]]:
            return [event.payload async for event in trigger.run()]

        try:
            return list(await asyncio.gather(*(one(t) for t in triggers.values())))
        finally:
            await close_loop_sessions()

    events = asyncio.run(both())
    assert all(e[0]["status"] == "success" for e in events)
    for token, trigger in triggers.items():
        used = set(server.bearers(rf"run_id={trigger.job_id}\b"))
        assert used == {token}, f"run {trigger.job_id} was polled with {used}, not only its own token"
    assert set(server.bearers("/runs/list")) <= set(conns)

    async def each() -> dict[str, set[str]]:
        seen = {}
        for token, conn_id in conns.items():
            server.clear()
            backend = await backend_for(conn_id)
            await backend.status_many([t.job_id for t in triggers.values()])
            seen[token] = set(server.bearers("/api/"))
        return seen

    assert run(each) == {token: {token} for token in conns}, "a backend lists with its own credentials only"


def test_a_pat_rotated_in_the_connection_is_picked_up_by_a_watched_run(ledger: MemoryLedger) -> None:
    """The PAT is rotated on the workspace and in the Airflow connection while the run is watched:
    the next poll gets a 401, the connection is read again, and the watch goes on to the end."""
    with DatabricksServer(pat="dapi-before-rotation") as server:
        conn_id = connection(server)
        env = f"AIRFLOW_CONN_{conn_id.upper()}"
        trigger = rebuild(_defer(_operator(conn_id, ledger, seconds=4), FakeTI(run_id="rotation"),
                                 FakeDagRun(dt.datetime.now(dt.timezone.utc))))

        async def watch() -> list[dict[str, Any]]:
            async def rotate() -> None:
                deadline = time.monotonic() + 30
                while "dapi-before-rotation" not in server.bearers(rf"run_id={trigger.job_id}\b|/runs/list"):
                    assert time.monotonic() < deadline, "the run was never polled"
                    await asyncio.sleep(0.05)
                conn = json.loads(os.environ[env])
                os.environ[env] = json.dumps({**conn, "password": "dapi-after-rotation"})
                server.rotate_pat("dapi-after-rotation")

            try:
                rotation = asyncio.ensure_future(rotate())
                events = [event.payload async for event in trigger.run()]
                await rotation
                return events
            finally:
                await close_loop_sessions()

        [event] = asyncio.run(watch())
        assert event["status"] == "success", event
        assert "dapi-after-rotation" in server.bearers(rf"run_id={trigger.job_id}\b"), "polled with the new PAT"


@pytest.mark.parametrize(("hint", "expected"), [(86400.0, MAX_RETRY_AFTER), (math.inf, 1.0), (math.nan, 1.0),
                                                (-5.0, 1.0), (7.0, 7.0), (None, 1.0)])
def test_the_submit_retry_delay_honours_a_capped_valid_retry_after(hint: float | None, expected: float) -> None:
    from airflow_spark_async.databricks.auth import DatabricksSettings

    backend = DatabricksBackend(DatabricksSettings("https://example.invalid", "pat", {"token": "x"}),
                                {"retry_delay": 1.0})
    assert backend.retry_delay_for(1, hint) == expected
    assert backend.retry_delay_for(60, None) == MAX_RETRY_AFTER, "doubling is capped too"
