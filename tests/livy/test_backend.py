"""The Livy backend against the Livy test server: states, 404s, coalesced polling, paging,
reattach by name, logs, links and cancel — each test names the behaviour it proves."""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_spark_async.core.backend import JobState, job_key
from airflow_spark_async.core.errors import JobNotFoundError
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.core.trigger import watch_job
from airflow_spark_async.livy.backend import BATCH_STATES, LivyBatchRequest, batch_name
from airflow_spark_async.livy.triggers import LivyBatchTrigger
from tests.conformance.harness import run_trigger
from tests.livy.conftest import CONN, backend, run
from tests.servers.fault_proxy import Fault, FaultProxy
from tests.servers.livy_server import LivyServer, Step

JOB = LivyBatchRequest(SparkJob(application="file:///apps/job.py", name="job"))
WANTED = job_key("d", "wanted", "r")
NEXT = job_key("d", "next", "r")


def submit(key: str, job: LivyBatchRequest = JOB) -> str:
    return run(lambda: _submit(key, job))


async def _submit(key: str, job: LivyBatchRequest) -> str:
    return (await (await backend()).submit(job, key=key)).job_id


def wait_state(server: LivyServer, batch_id: str, state: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while server.batch_state(batch_id) != state:
        assert time.monotonic() < deadline, f"batch {batch_id} stayed {server.batch_state(batch_id)}"
        time.sleep(0.05)


@pytest.mark.parametrize("state", ["not_started", "starting", "recovering", "idle", "running", "busy", "shutting_down"])
def test_non_terminal_states_keep_the_trigger_polling(livy: LivyServer, state: str) -> None:
    livy.script(Step(state))
    batch_id = submit("asa-nonterminal")
    wait_state(livy, batch_id, state)
    status = run(lambda: _status(batch_id))
    assert status.backend_state == state and not status.is_terminal
    waiting = state in ("not_started", "starting", "recovering")
    stopping = state == "shutting_down"  # a stop in progress: never reattached to
    assert status.state is (JobState.PENDING if waiting else JobState.CANCELLING if stopping else JobState.RUNNING)


async def _status(batch_id: str):  # type: ignore[no-untyped-def]
    return await (await backend()).status(batch_id)


@pytest.mark.parametrize(
    ("state", "ours", "says"),
    [
        ("success", JobState.SUCCEEDED, None),
        ("dead", JobState.FAILED, "the Spark application failed"),
        ("error", JobState.FAILED, "Livy reported an error"),
        ("killed", JobState.CANCELLED, "the batch was killed"),
    ],
)
def test_terminal_states_end_with_their_own_message_and_the_log(
    livy: LivyServer, state: str, ours: JobState, says: str | None
) -> None:
    livy.script(Step("running", 0.2, ["Traceback: ValueError: bad input row 17"]), Step(state))
    batch_id = submit(f"asa-terminal-{state}")
    wait_state(livy, batch_id, state)
    status = run(lambda: _status(batch_id))
    assert status.state is ours and status.backend_state == state
    if says is None:
        assert status.message is None and status.diagnostics is None
    else:
        assert says in (status.message or "") and "application_" in (status.message or "")
        assert "bad input row 17" in (status.diagnostics or "")  # the batch's own last log lines
        assert "stdout:" not in (status.diagnostics or "")  # Livy's headings are not output


def test_every_state_livy_documents_is_mapped_and_an_unknown_one_keeps_polling(livy: LivyServer) -> None:
    assert set(BATCH_STATES) == {"not_started", "starting", "recovering", "idle", "running", "busy",
                                 "shutting_down", "success", "error", "dead", "killed"}
    livy.script(Step("some_future_state"))
    batch_id = submit("asa-unknown-state")
    wait_state(livy, batch_id, "some_future_state")
    status = run(lambda: _status(batch_id))
    assert status.state is JobState.PENDING and status.backend_state == "some_future_state"


def test_a_batch_forgotten_by_a_restarted_livy_fails_the_trigger_at_once(livy: LivyServer) -> None:
    livy.script(Step("running"))
    batch_id = submit("asa-restart")
    livy.restart()
    trigger = LivyBatchTrigger(conn_id=CONN, job_id=batch_id, policy={"interval": 0.2})
    started = time.monotonic()
    [event] = run_trigger(trigger)
    assert event["status"] == "error"
    assert "does not know batch" in event["message"] and "restarted" in event["message"]
    assert time.monotonic() - started < 5, "a 404 must end the watch, not be polled"
    with pytest.raises(JobNotFoundError, match="garbage-collected"):
        run(lambda: _status(batch_id))


def test_a_garbage_collected_batch_is_not_found() -> None:
    with LivyServer(state_retain=0.3) as livy, pytest.MonkeyPatch.context() as mp:
        from tests.livy.conftest import set_conn

        set_conn(mp, CONN, livy.port)
        livy.script(Step("success"))
        batch_id = submit("asa-gc")
        time.sleep(0.5)
        with pytest.raises(JobNotFoundError, match="state-retain"):
            run(lambda: _status(batch_id))


def test_many_triggers_cost_one_list_request_per_cycle(livy: LivyServer) -> None:
    """Eight batches watched at once: the watcher lists them with one GET /batches per cycle and asks
    each batch alone only once, when it ended (``GET /batches/{id}``: the full story)."""
    ids = []
    for i in range(8):
        livy.script(Step("running", 3.0), Step("success"))
        ids.append(submit(f"asa-coalesce-{i}"))
    livy.clear_requests()

    async def watch_all() -> list[str]:
        triggers = [LivyBatchTrigger(conn_id=CONN, job_id=j, policy={"interval": 0.5}) for j in ids]
        events = await asyncio.gather(*(watch_job(t, log=t.log) for t in triggers))
        return [e.status.value for e in events]

    started = time.monotonic()
    assert run(watch_all) == ["success"] * 8
    cycles = (time.monotonic() - started) / 0.5
    lists = livy.count("GET", r"^/batches\?")
    assert 3 <= lists <= cycles + 2, f"{lists} list requests in {cycles:.0f} cycles"
    assert livy.count("GET", r"/state$") == 0, "the Batch object has the state and the name"
    assert livy.count("GET", r"^/batches/\d+$") == 8, "one detail read per batch, at its end"


def test_a_failing_list_still_ends_every_batch(proxied_livy: tuple[LivyServer, FaultProxy]) -> None:
    livy, proxy = proxied_livy
    ids = []
    for i in range(3):
        livy.script(Step("running", 1.5), Step("success"))
        ids.append(submit(f"asa-fallback-{i}"))
    proxy.inject(Fault("500", count=1000, path=r"^/batches\?"))

    async def together() -> list[str]:
        triggers = [LivyBatchTrigger(conn_id=CONN, job_id=j, policy={"interval": 0.5}) for j in ids]
        events = await asyncio.gather(*(watch_job(t, log=t.log) for t in triggers))
        return [e.status.value for e in events]

    assert run(together) == ["success"] * 3
    assert len(proxy.injected) >= 1, "the listing was tried and failed"
    assert livy.count("GET", r"^/batches/\d+$") >= 3, "every batch was answered by GET /batches/{id}"


def test_listing_pages_back_from_the_newest_batches(livy: LivyServer) -> None:
    livy.default_script = (Step("success"),)
    ids = [submit(f"asa-page-{i}") for i in range(230)]

    async def list_some() -> tuple[dict[str, str], dict[str, str], int]:
        b = await backend(page_size=50)
        newest = await b.status_many(ids[-3:])
        old = await b.status_many([ids[5], ids[-1]])  # one batch four pages back: its own GET is cheaper
        most = await b.status_many(ids[:200])  # 200 batches: paged back to the oldest of them
        return ({k: v.backend_state for k, v in newest.items()}, {k: v.backend_state for k, v in old.items()},
                len(most))

    livy.clear_requests()
    newest, old, most = run(list_some)
    assert newest == {i: "success" for i in ids[-3:]}
    assert livy.requests[0] == ("GET", "/batches?from=0&size=50")  # no hint yet: learns "total"
    assert livy.requests[1] == ("GET", "/batches?from=180&size=50")  # then jumps to the newest page
    assert old == {ids[-1]: "success"}, "a lone old id is left to GET /batches/{id}"
    assert most == 200
    assert [p for _m, p in livy.requests[3:]] == [f"/batches?from={f}&size=50" for f in (180, 130, 80, 30)] + [
        "/batches?from=0&size=30"]


def test_find_by_key_returns_the_newest_batch_of_the_key_across_pages(livy: LivyServer) -> None:
    livy.default_script = (Step("success"),)
    livy.script(Step("dead"))
    first = submit(WANTED)
    for i in range(120):
        submit(f"asa-filler-{i}")
    livy.script(Step("running"))
    second = submit(WANTED)  # a retry: the name of the dead one is still held → suffix -1
    for i in range(120):
        submit(f"asa-more-{i}")
    names = {b["id"]: b["name"] for b in livy.batches()}
    assert names[int(first)] == batch_name("job", WANTED)
    assert names[int(second)] == batch_name("job", WANTED, 1)

    async def find() -> tuple[str | None, str | None]:
        b = await backend()
        found = await b.find_by_key(WANTED)
        missing = await b.find_by_key(job_key("d", "never-submitted", "r"))
        return (found.job_id if found else None, missing.job_id if missing else None)

    assert run(find) == (second, None)


def test_a_duplicate_submission_of_a_running_try_returns_its_batch(livy: LivyServer) -> None:
    """Livy refuses a second live batch of one name: the name is a server-side lock against a
    double submission, and the answer to the refused one is the batch that holds the name."""
    livy.script(Step("running"))
    first = submit(job_key("d", "dup", "r"))
    second = submit(job_key("d", "dup", "r"))
    assert first == second
    assert [b["id"] for b in livy.batches()] == [int(first)]
    assert livy.count("POST", r"^/batches$") == 2  # the refused one consumed id 1, as Livy does


def test_a_retry_after_an_ended_batch_submits_under_the_next_name_without_a_refusal(livy: LivyServer) -> None:
    livy.script(Step("dead"))
    failed = submit(NEXT)
    wait_state(livy, failed, "dead")

    async def retry() -> str:
        b = await backend()
        found = await b.find_by_key(NEXT)  # what the operator does before submitting
        assert found is not None and found.is_terminal
        return (await b.submit(JOB, key=NEXT)).job_id

    livy.clear_requests()
    new = run(retry)
    assert new != failed
    assert livy.count("POST", r"^/batches$") == 1
    assert livy.posts[0]["name"] == batch_name("job", NEXT, 1)


def test_logs_return_the_last_lines_paged_backwards(livy: LivyServer) -> None:
    lines = [f"line {i}" for i in range(1000)]
    livy.script(Step("running", 0, lines), Step("success"))
    batch_id = submit("asa-logs")
    wait_state(livy, batch_id, "success")

    async def tail(n: int) -> str | None:
        return await (await backend(page_size=100)).logs(batch_id, tail_lines=n)

    livy.clear_requests()
    assert run(lambda: tail(250)) == "\n".join(lines[-250:])
    assert [p for m, p in livy.requests] == [
        f"/batches/{batch_id}/log?size=100",
        f"/batches/{batch_id}/log?from=802&size=100",
        f"/batches/{batch_id}/log?from=702&size=100",
    ]
    assert run(lambda: tail(5000)) == "\n".join(lines)  # more than there is: all of it, headings dropped


def test_links_come_from_app_info_and_the_livy_ui(livy: LivyServer) -> None:
    livy.script(Step("running"))
    batch_id = submit("asa-links")
    wait_state(livy, batch_id, "running")

    async def listed() -> dict[str, str]:
        found = await (await backend()).status_many([batch_id])
        return dict(found[batch_id].links)

    links = run(listed)
    assert links["livy_batch"] == f"{livy.origin}/ui/batch/{batch_id}/log"
    assert links["spark_ui"].startswith("http://127.0.0.1:8088/proxy/application_")
    assert "/containerlogs/" in links["driver_log"]


def test_cancel_deletes_the_batch_and_tolerates_one_livy_forgot(livy: LivyServer) -> None:
    livy.script(Step("running"))
    batch_id = submit("asa-cancel")

    async def cancel_twice() -> None:
        b = await backend()
        await b.cancel(batch_id)
        await b.cancel(batch_id)  # already gone: 404, nothing left to stop

    run(cancel_twice)
    assert livy.batch_state(batch_id) == "deleted" and livy.deleted[int(batch_id)] == "killed"
    assert livy.count("DELETE", rf"^/batches/{batch_id}$") == 2


def test_the_request_body_maps_every_field_livy_knows() -> None:
    job = SparkJob(
        application="s3://bucket/app.jar",
        main_class="com.example.Main",
        args=["--day", "2024-01-01"],
        conf={"spark.sql.shuffle.partitions": "8"},
        jars=["s3://b/dep.jar"],
        py_files=["s3://b/lib.zip"],
        files=["s3://b/f.txt"],
        archives=["s3://b/env.tgz#env"],
        packages=["org.apache.spark:spark-avro_2.13:4.0.0"],
        driver_memory="1g",
        driver_cores=1,
        executor_memory="2g",
        executor_cores=2,
        num_executors=3,
        env={"MODE": "prod"},
    )
    body = LivyBatchRequest(job, queue="etl", proxy_user="alice").body("n-asa-k")
    assert body == {
        "file": "s3://bucket/app.jar",
        "name": "n-asa-k",
        "className": "com.example.Main",
        "args": ["--day", "2024-01-01"],
        "jars": ["s3://b/dep.jar"],
        "pyFiles": ["s3://b/lib.zip"],
        "files": ["s3://b/f.txt"],
        "archives": ["s3://b/env.tgz#env"],
        "driverMemory": "1g",
        "driverCores": 1,
        "executorMemory": "2g",
        "executorCores": 2,
        "numExecutors": 3,
        "queue": "etl",
        "proxyUser": "alice",
        "conf": {
            "spark.sql.shuffle.partitions": "8",
            "spark.jars.packages": "org.apache.spark:spark-avro_2.13:4.0.0",
            "spark.yarn.appMasterEnv.MODE": "prod",
            "spark.kubernetes.driverEnv.MODE": "prod",
        },
    }


def test_the_test_server_refuses_what_livy_refuses(livy: LivyServer) -> None:
    """The server is only worth testing against if it is as strict as Livy."""
    import json
    import urllib.error
    import urllib.request

    def post(body: object) -> tuple[int, object]:
        req = urllib.request.Request(f"{livy.url}/batches", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    assert post({"file": "/a.py", "nope": 1}) == (
        400, 'Unrecognized field "nope" (class org.apache.livy.server.batch.CreateBatchRequest), not marked as '
             "ignorable")
    assert post({"name": "x"}) == (400, {"msg": "requirement failed: File is required."})
    assert livy.batch_state(0) == "starting", "Livy's quirk: the stray batch stays listed"
    status, created = post({"file": "/a.py", "name": "taken"})
    assert status == 201 and created["state"] == "starting"  # type: ignore[index]
    assert post({"file": "/a.py", "name": "taken"}) == (
        400, {"msg": "Rejected, Reason: Duplicate session name: Some(taken) for session 2"})
