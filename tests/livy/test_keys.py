"""Keys, id reuse, garbage collection and list coverage of the Livy backend, against the Livy test
server: every Batch answer carries its key, lookups by key are exact and per family, a batch of
another key at a reused id is told apart and never deleted, a collected batch is ``JobNotFoundError``
saying why, and watching more batches than three pages costs pages, not one request per batch."""

from __future__ import annotations

import asyncio
import json
import math
import urllib.request
from collections.abc import Mapping

import pytest

from airflow_spark_async.core.backend import JobState, JobStatus, job_key, parse_key
from airflow_spark_async.core.errors import JobNotFoundError
from airflow_spark_async.core.runtime import get_watcher
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.livy.backend import LivyBatchRequest, batch_name
from tests.livy.conftest import CONN, backend, run, set_conn
from tests.livy.test_backend import wait_state
from tests.servers.livy_server import LivyServer, Step

JOB = LivyBatchRequest(SparkJob(application="file:///apps/job.py", name="job"))


def key(task: str, generation: int = 1, run_id: str = "manual__1") -> str:
    return job_key("dag", task, run_id, generation=generation, run_instance="2026-01-01T00:00:00")


def family(of: str) -> str:
    parsed = parse_key(of)
    assert parsed is not None
    return parsed.family


def submit(k: str, job: LivyBatchRequest = JOB) -> str:
    async def go() -> str:
        return (await (await backend()).submit(job, key=k)).job_id

    return run(go)


def post_raw(livy: LivyServer, name: str) -> int:
    """A batch someone else submitted (another tool, another deployment), straight to Livy."""
    body = json.dumps({"file": "/other.py", "name": name}).encode()
    req = urllib.request.Request(f"{livy.url}/batches", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(json.load(resp)["id"])


# -- defect 1/15: keys in every answer, exact lookups, id reuse ------------------------------------------


def test_every_batch_answer_carries_the_key_of_its_name(livy: LivyServer) -> None:
    k = key("carries")
    livy.script(Step("running"))

    async def every_answer() -> dict[str, str | None]:
        b = await backend()
        created = await b.submit(JOB, key=k)
        one = await b.status(created.job_id)
        listed = (await b.status_many([created.job_id, "999"]))[created.job_id]
        found = await b.find_by_key(k)
        assert found is not None
        return {"POST": created.key, "GET one": one.key, "GET list": listed.key, "find": found.key}

    assert run(every_answer) == {"POST": k, "GET one": k, "GET list": k, "find": k}
    assert livy.count("GET", r"/state$") == 0, "status reads the Batch object, which has the name"


def test_status_of_a_reused_id_carries_the_other_batchs_key(livy: LivyServer) -> None:
    """Livy without recovery restarts ids at 0: the id the core remembers now names someone else's batch.
    Its status must say whose it is, so the core can tell it is not ours."""
    mine = key("reused")
    livy.script(Step("running"))
    batch_id = submit(mine)
    livy.restart()
    theirs = job_key("other-dag", "t", "r", run_instance="x")
    livy.script(Step("running"))
    assert str(post_raw(livy, f"theirs-{theirs}")) == batch_id

    status = run(lambda: _status(batch_id))
    assert status.key == theirs != mine
    listed = run(lambda: _status_many([batch_id, "7"]))
    assert listed[batch_id].key == theirs
    anonymous = post_raw(livy, "a batch without any key")
    assert run(lambda: _status(str(anonymous))).key is None


async def _status(batch_id: str):  # type: ignore[no-untyped-def]
    return await (await backend()).status(batch_id)


async def _status_many(ids: list[str]):  # type: ignore[no-untyped-def]
    return await (await backend()).status_many(ids)


def test_cancel_with_a_key_never_deletes_a_batch_of_another_key(livy: LivyServer) -> None:
    mine = key("cancel-safe")
    livy.script(Step("running"))
    batch_id = submit(mine)
    livy.restart()
    livy.script(Step("running"))
    other = post_raw(livy, f"theirs-{job_key('x', 'y', 'z')}")
    assert str(other) == batch_id

    async def cancel(with_key: str) -> None:
        await (await backend()).cancel(batch_id, key=with_key)

    run(lambda: cancel(mine))
    assert livy.count("DELETE", r"/batches/") == 0 and livy.batch_state(batch_id) == "running"
    run(lambda: cancel(key("never-submitted")))
    assert livy.count("DELETE", r"/batches/") == 0, "a batch of another key is never deleted"


def test_cancel_with_the_right_key_deletes_and_tolerates_a_forgotten_batch(livy: LivyServer) -> None:
    mine = key("cancel-mine")
    livy.script(Step("running"))
    batch_id = submit(mine)

    async def cancel_twice() -> None:
        b = await backend()
        await b.cancel(batch_id, key=mine)
        await b.cancel(batch_id, key=mine)  # 404 on the check: nothing left to stop

    run(cancel_twice)
    assert livy.deleted[int(batch_id)] == "killed"
    assert livy.count("DELETE", rf"^/batches/{batch_id}$") == 1


def test_find_by_key_is_exact_and_find_jobs_lists_a_family_newest_first(livy: LivyServer) -> None:
    livy.default_script = (Step("running"),)
    first = key("fam", generation=1)
    twelfth = key("fam", generation=12)  # "…-1" is a prefix of "…-12": a substring match would confuse them
    cousin = key("fam", generation=1, run_id="manual__2")  # another run: another family
    ids = {
        "g12": submit(twelfth),
        "cousin": submit(cousin),
    }
    for i in range(150):  # the family spans pages
        submit(key(f"filler-{i}"))
    ids["g1"] = submit(first)

    async def look() -> tuple[str | None, str | None, list[tuple[str, str | None]]]:
        b = await backend()
        exact = await b.find_by_key(first)
        missing = await b.find_by_key(key("fam", generation=2))
        jobs = await b.find_jobs(family(first))
        return exact.job_id if exact else None, missing.job_id if missing else None, [(j.job_id, j.key) for j in jobs]

    exact, missing, jobs = run(look)
    assert exact == ids["g1"] and missing is None
    assert jobs == [(ids["g1"], first), (ids["g12"], twelfth)], "newest first, the other run's family left out"


def test_find_jobs_sees_ended_and_resubmitted_batches_of_the_family(livy: LivyServer) -> None:
    k = key("resubmitted")
    livy.script(Step("dead"))
    failed = submit(k)
    wait_state(livy, failed, "dead")
    livy.script(Step("running"))

    async def retry() -> tuple[str, list[tuple[str, str, str | None]]]:
        b = await backend()
        assert (await b.find_by_key(k)) is not None  # what the core does before it submits
        new = await b.submit(JOB, key=k)  # the name of the dead batch is still held: "-1" it is
        return new.job_id, [(j.job_id, j.backend_state, j.key) for j in await b.find_jobs(family(k))]

    new, jobs = run(retry)
    assert livy.posts[-1]["name"] == batch_name("job", k, 1)
    assert jobs == [(new, "running", k), (failed, "dead", k)]


# -- defect 3: a garbage-collected batch -----------------------------------------------------------------


def test_a_batch_collected_after_state_retain_is_not_found_saying_why(livy: LivyServer) -> None:
    livy.script(Step("success"))
    batch_id = submit(key("gc"))
    wait_state(livy, batch_id, "success")
    assert int(batch_id) in livy.collect_garbage(retain=0)
    assert livy.batch_state(batch_id) == "unknown"
    with pytest.raises(JobNotFoundError) as raised:
        run(lambda: _status(batch_id))
    assert raised.value.status == 404
    assert "garbage-collected" in str(raised.value) and "livy.server.session.state-retain.sec" in str(raised.value)
    assert run(lambda: _status_many([batch_id, "12345"])) == {}, "gone from the list too: no invented state"


def test_the_collector_spares_live_batches_and_frees_names(livy: LivyServer) -> None:
    k = key("gc-names")
    livy.script(Step("running"))
    live = submit(key("gc-live"))
    livy.script(Step("dead"))
    dead = submit(k)
    wait_state(livy, dead, "dead")
    assert livy.collect_garbage(retain=0) == [int(dead)]
    assert livy.batch_state(live) == "running"
    livy.script(Step("running"))
    again = submit(k)  # the name is free again: no "Duplicate session name", no suffix
    assert livy.posts[-1]["name"] == batch_name("job", k)
    assert again != dead


# -- defect 9 (here): shutting_down is a stop in progress --------------------------------------------------


def test_shutting_down_is_cancelling_and_is_never_handed_back_as_a_duplicates_batch(livy: LivyServer) -> None:
    k = key("stopping")
    livy.script(Step("shutting_down"))
    stopping = submit(k)
    wait_state(livy, stopping, "shutting_down")
    status = run(lambda: _status(stopping))
    assert status.state is JobState.CANCELLING and not status.is_terminal
    livy.script(Step("running"))
    new = submit(k)  # its name is held by the stopping batch: a new batch under the next name
    assert new != stopping and livy.posts[-1]["name"] == batch_name("job", k, 1)


# -- defect 13: list coverage past 300 batches ---------------------------------------------------------------


def test_watching_more_than_three_pages_costs_pages_not_one_request_per_batch(livy: LivyServer) -> None:
    livy.default_script = (Step("running"),)
    ids = [str(post_raw(livy, f"b-{key(f'many-{i}')}")) for i in range(350)]
    pages = math.ceil(len(ids) / 100)

    async def cycles() -> tuple[list[int], list[Mapping[str, JobStatus]]]:
        b = await backend()  # default options: 100 batches a page
        answers: list[Mapping[str, JobStatus]] = []
        costs: list[int] = []
        for _ in range(3):
            before = len(livy.requests)
            answers.append(await b.status_many(ids))
            costs.append(len(livy.requests) - before)
        return costs, answers

    livy.clear_requests()
    costs, answers = run(cycles)
    assert all(set(a) == set(ids) for a in answers), "every watched batch is answered by the list"
    assert all(s.state is JobState.RUNNING and s.key for a in answers for s in a.values())
    assert costs == [pages + 1, pages, pages], "the first cycle learns `total`; then one request a page"
    assert livy.count("GET", r"^/batches/\d+") == 0


def test_the_watcher_polls_350_batches_with_pages_per_cycle(livy: LivyServer) -> None:
    """Through the real watcher: 350 triggers' questions cost ~4 list requests, no per-batch fallback."""
    livy.default_script = (Step("running"),)
    ids = [str(post_raw(livy, f"w-{key(f'watch-{i}')}")) for i in range(350)]

    async def one_cycle() -> int:
        b = await backend()
        watcher = get_watcher(b)
        await b.status_many(ids[-1:])  # learn `total`, as an earlier cycle would have
        before = len(livy.requests)
        statuses = await asyncio.gather(*(watcher.status(i) for i in ids))
        assert {s.job_id for s in statuses} == set(ids)
        return len(livy.requests) - before

    livy.clear_requests()
    assert run(one_cycle) == 4
    assert livy.count("GET", r"^/batches/\d+") == 0


def test_an_old_batch_alone_is_asked_for_alone_rather_than_paged_to(livy: LivyServer) -> None:
    livy.default_script = (Step("running"),)
    ids = [str(post_raw(livy, f"o-{key(f'old-{i}')}")) for i in range(350)]

    async def listed() -> tuple[set[str], int]:
        b = await backend()
        await b.status_many(ids[-1:])
        before = len(livy.requests)
        found = await b.status_many([ids[0], ids[-1]])
        return set(found), len(livy.requests) - before

    found, cost = run(listed)
    assert found == {ids[-1]} and cost == 1, "three pages to reach one batch: its own GET is cheaper"


# -- defect 9 (identity) ---------------------------------------------------------------------------------------


def test_identity_is_the_endpoint_and_a_digest_of_the_credentials(livy: LivyServer,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    async def identity() -> str:
        return (await backend()).identity()

    set_conn(monkeypatch, CONN, livy.port, password="tok-A-secret")
    a = run(identity)
    set_conn(monkeypatch, CONN, livy.port, password="tok-B-secret")
    b = run(identity)
    set_conn(monkeypatch, CONN, livy.port, password="tok-A-secret")
    assert run(identity) == a != b
    endpoint, digest = a.rsplit("|", 1)
    assert endpoint == livy.url and len(digest) == 12 and all(c in "0123456789abcdef" for c in digest)
    assert "tok-A" not in a and "secret" not in a
