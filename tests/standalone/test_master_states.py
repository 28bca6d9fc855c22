"""The standalone backend against a fake master (tests/standalone/fake_master.py) for what a real
local cluster does not show on demand: a master that is not ALIVE is transient, never "job not
found"; a kill in progress is CANCELLING; the token never leaves the configured origins; the
identity is endpoint + credential digest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

from airflow_spark_async.core.backend import JobState
from airflow_spark_async.core.errors import (
    JobNotFoundError,
    RequestRejected,
    ServerError,
    TransientError,
)
from airflow_spark_async.core.http import close_loop_sessions
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.standalone.backend import StandaloneBackend
from airflow_spark_async.standalone.hook import StandaloneSettings
from tests.standalone.fake_master import FakeMaster, FakeWorkerUI

T = TypeVar("T")
TOKEN = "eyJhbGciOiJIUzI1NiJ9.e30.secret-signature"  # a JWS, as Spark 4's JWSFilter wants
JOB = SparkJob(application="file:///apps/app.py", name="etl")


@pytest.fixture
def worker() -> Iterator[FakeWorkerUI]:
    with FakeWorkerUI() as ui:
        yield ui


@pytest.fixture
def master(worker: FakeWorkerUI) -> Iterator[FakeMaster]:
    with FakeMaster(worker_ui=worker.origin) as fake:
        yield fake


def backend_of(master: FakeMaster, token: str | None = TOKEN) -> StandaloneBackend:
    return StandaloneBackend(StandaloneSettings(master.rest_url, master.ui_url, "spark://127.0.0.1:7077",
                                                token=token))


def run(master: FakeMaster, call: Callable[[StandaloneBackend], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            return await call(backend_of(master))
        finally:
            await close_loop_sessions()

    return asyncio.run(go())


# -- defect 3: a master that is not ALIVE ------------------------------------------------------------------


@pytest.mark.parametrize("state", ["STANDBY", "RECOVERING", "COMPLETING_RECOVERY"])
def test_a_master_that_is_not_alive_is_transient_for_status_list_kill_and_submit(master: FakeMaster,
                                                                               state: str) -> None:
    driver = master.add_driver("RUNNING")
    master.state = state
    with pytest.raises(ServerError, match="not ALIVE") as raised:
        run(master, lambda b: b.status(driver))
    assert isinstance(raised.value, TransientError) and not isinstance(raised.value, JobNotFoundError)
    with pytest.raises(ServerError, match=state):
        run(master, lambda b: b.status_many([driver, "driver-other"]))  # its empty list is no news
    with pytest.raises(ServerError, match="kill drivers in ALIVE state"):
        run(master, lambda b: b.cancel(driver))  # the kill did not happen: not a silent success
    with pytest.raises(ServerError, match="accept driver submissions"):
        run(master, lambda b: b.submit(JOB, key="asa-000000000000000000000000-1"))
    master.state = "ALIVE"
    assert run(master, lambda b: b.status(driver)).state is JobState.RUNNING


def test_only_an_unknown_driver_of_an_alive_master_is_not_found(master: FakeMaster) -> None:
    with pytest.raises(JobNotFoundError, match="does not know driver"):
        run(master, lambda b: b.status("driver-20000101000000-9999"))
    assert ("GET", "/json/") in [(m, p) for m, p, _h in master.requests], "ALIVE was checked before saying so"


def test_a_refused_submission_of_an_alive_master_stays_a_rejection(master: FakeMaster) -> None:
    master.refuse_submissions = "Malformed request: spark.app.name is missing"
    with pytest.raises(RequestRejected, match="refused the submission: Malformed"):
        run(master, lambda b: b.submit(JOB, key="asa-000000000000000000000000-1"))


# -- defect 6: a kill in progress ----------------------------------------------------------------------------


def test_a_requested_kill_reports_cancelling_until_the_driver_is_killed(master: FakeMaster) -> None:
    driver = master.add_driver("RUNNING")
    other = master.add_driver("RUNNING")

    async def kill_then_look(b: StandaloneBackend) -> tuple[JobState, JobState, JobState]:
        await b.cancel(driver, key="asa-000000000000000000000000-1")
        one = (await b.status(driver)).state
        listed = await b.status_many([driver, other])
        return one, listed[driver].state, listed[other].state

    assert run(master, kill_then_look) == (JobState.CANCELLING, JobState.CANCELLING, JobState.RUNNING)
    assert master.drivers[driver] == "RUNNING", "the master still says RUNNING: the kill is in progress"
    # Another backend object of the same process (the worker builds one per call) knows it too.
    status = run(master, lambda b: b.status(driver))
    assert status.state is JobState.CANCELLING and status.backend_state == "RUNNING"
    assert "kill was requested" in (status.message or "")
    master.finish_kill(driver)
    assert run(master, lambda b: b.status(driver)).state is JobState.CANCELLED


def test_a_kill_of_an_ended_driver_is_not_remembered(master: FakeMaster) -> None:
    driver = master.add_driver("FINISHED")
    run(master, lambda b: b.cancel(driver))  # "already finished or does not exist": nothing to stop
    assert run(master, lambda b: b.status(driver)).state is JobState.SUCCEEDED


# -- defect 11: credentials only to the configured origins ------------------------------------------------------


def test_the_token_goes_to_the_master_and_never_to_a_worker_ui(master: FakeMaster, worker: FakeWorkerUI) -> None:
    driver = master.add_driver("FAILED")
    worker.logs[(driver, "stderr")] = "Traceback: boom"

    async def look(b: StandaloneBackend) -> tuple[str | None, JobState]:
        listed = await b.status_many([driver, "x"])
        return await b.logs(driver, tail_lines=10), listed[driver].state

    tail, state = run(master, look)
    assert tail is not None and "Traceback: boom" in tail and state is JobState.FAILED
    assert worker.headers, "the driver log was read from the worker UI"
    assert all("Authorization" not in h for h in worker.headers), "the worker UI never sees the token"
    assert all(TOKEN not in str(h) for h in worker.headers)
    to_master = [h for _m, _p, h in master.requests]
    assert to_master and all(h.get("Authorization") == f"Bearer {TOKEN}" for h in to_master), \
        "the configured REST and UI origins get it"


# -- defect 9: identity ------------------------------------------------------------------------------------------


def test_identity_is_the_rest_endpoint_and_a_digest_of_the_token(master: FakeMaster) -> None:
    a, b, none = backend_of(master), backend_of(master, token="another"), backend_of(master, token=None)
    assert a.identity() == backend_of(master).identity()
    assert len({a.identity(), b.identity(), none.identity()}) == 3
    endpoint, digest = a.identity().rsplit("|", 1)
    assert endpoint == master.rest_url == a.watch_key
    assert len(digest) == 12 and int(digest, 16) >= 0
    assert TOKEN not in a.identity() and "secret" not in a.identity()
