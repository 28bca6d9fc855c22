"""Keys, lookup by key, cancelling states and fault isolation of the EMR backends, against moto.

Each test here proves one rule of the exactly-once contract (docs/concepts.md) on EMR's side:
a job's key is read back from every answer that carries it (step and run names, the cluster
tag), a key family is looked up exactly, a job being cancelled is never one to reattach to, a
job that carries another key is never cancelled, one unknown step id does not fail the steps
listed beside it, and a lost ``RunJobFlow`` answer never leaves a second billed cluster.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from airflow_spark_async.core.backend import JobState, job_key, parse_key
from airflow_spark_async.core.errors import JobNotFoundError
from airflow_spark_async.core.http import close_loop_sessions
from airflow_spark_async.core.ledger import MemoryLedger
from airflow_spark_async.core.runtime import get_backend, run_sync
from airflow_spark_async.emr.clusters import KEY_TAG, EmrClusterBackend, JobFlowRequest
from airflow_spark_async.emr.ids import StepsRef
from airflow_spark_async.emr.operators import EmrCreateJobFlowOperator, EmrServerlessStartJobOperator
from airflow_spark_async.emr.serverless import EmrServerlessBackend, JobRunRequest
from airflow_spark_async.emr.steps import EmrStepsBackend, StepsRequest
from tests.conformance.harness import FakeTI, defer
from tests.emr.moto_aws import APP, ROLE, MotoAws, aws_fault, wait_until
from tests.emr.test_clusters import _overrides
from tests.emr.test_steps import _raw_step

T = TypeVar("T")


def _keys(generations: int = 2) -> tuple[list[str], str]:
    """Keys of ``generations`` clear cycles of one task instance, and one key of another run."""
    run_id = f"manual__{uuid.uuid4().hex[:8]}"
    family = [job_key("keys", "task", run_id, generation=g) for g in range(1, generations + 1)]
    return family, job_key("keys", "task", f"{run_id}-other")


def _run(conn_id: str, backend_cls: type, options: dict[str, Any],
         body: Callable[[Any], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            return await body(await get_backend(backend_cls, conn_id, options))
        finally:
            await close_loop_sessions()

    return run_sync(go)


# -- steps ------------------------------------------------------------------------------------


def test_one_unknown_step_id_fails_only_its_own_job(aws: MotoAws, conn_id: str, cluster_id: str) -> None:
    """EMR refuses a whole ListSteps call for one unknown id; the nine others must still be answered."""
    added = aws.client("emr").add_job_flow_steps(JobFlowId=cluster_id,
                                                 Steps=[_raw_step(f"s{i}", 60) for i in range(4)])["StepIds"]
    jobs = [f"{cluster_id}:{s}" for s in added]
    unknown = f"{cluster_id}:s-NOSUCHSTEP0001"

    async def body(backend: EmrStepsBackend) -> tuple[Any, list[Any]]:
        listed = await backend.status_many([*jobs, unknown])
        one_by_one = await asyncio.gather(*(backend.status(j) for j in [*jobs, unknown]), return_exceptions=True)
        await backend.cancel(jobs[0].split(":")[0] + ":" + ",".join(added))
        return listed, one_by_one

    aws.proxy.clear()
    listed, one_by_one = _run(conn_id, EmrStepsBackend, {}, body)
    assert all(not isinstance(listed[j], BaseException) for j in jobs), "every known step is answered despite it"
    assert isinstance(listed[unknown], JobNotFoundError), "the unknown step's job gets its own error in the list"
    assert all(not isinstance(s, BaseException) and s.state is JobState.RUNNING for s in one_by_one[:-1]), one_by_one
    assert isinstance(one_by_one[-1], JobNotFoundError), "only the unknown step is reported as not found"
    assert aws.proxy.ops("DescribeCluster") <= 2, "the cluster is checked once per refused chunk, not per step"


def test_status_many_reports_each_jobs_own_error_and_raises_only_when_nothing_was_read(
        aws: MotoAws, conn_id: str, cluster_id: str) -> None:
    """Core's contract: a per-job error goes into the mapping (that trigger alone fails or backs
    off); only a listing that read nothing raises. Leaving such a job out made the watcher ask it
    again one by one."""
    added = aws.client("emr").add_job_flow_steps(JobFlowId=cluster_id, Steps=[_raw_step("a", 60)])["StepIds"]
    known, unknown = f"{cluster_id}:{added[0]}", f"{cluster_id}:s-NOSUCHSTEP0002"
    gone = "j-NOSUCHCLUSTER:s-NOSUCHSTEP0003"

    async def body(backend: EmrStepsBackend) -> tuple[Any, Any]:
        mixed = await backend.status_many([known, unknown, gone])
        only_unknown = await backend.status_many([unknown])
        await backend.cancel(known, key=None)
        return mixed, only_unknown

    mixed, only_unknown = _run(conn_id, EmrStepsBackend, {}, body)
    assert set(mixed) == {known, unknown, gone}, mixed
    assert mixed[known].state is JobState.RUNNING or not mixed[known].is_terminal
    assert isinstance(mixed[unknown], JobNotFoundError), mixed[unknown]
    assert isinstance(mixed[gone], Exception), "the unreadable cluster's job gets its own error"
    assert isinstance(only_unknown[unknown], JobNotFoundError), "an unknown id alone is its error, not a failed list"


def test_steps_carry_their_key_and_a_step_being_cancelled_is_cancelling(aws: MotoAws, conn_id: str,
                                                                        cluster_id: str) -> None:
    [key, _], _ = _keys()

    async def submit(backend: EmrStepsBackend) -> Any:
        return await backend.submit(StepsRequest(cluster_id, (_raw_step("a", 60), _raw_step("b", 60))), key=key)

    submitted = _run(conn_id, EmrStepsBackend, {}, submit)
    ref = StepsRef.parse(submitted.job_id)
    wait_until(lambda: aws.step(cluster_id, ref.step_ids[0]).state == "RUNNING", what="the first step to run")
    aws.held.add(ref.step_ids[0])
    aws.set_step(aws.step(cluster_id, ref.step_ids[0]), "CANCEL_PENDING")  # EMR interrupting it, slowly

    async def status(backend: EmrStepsBackend) -> Any:
        return await backend.status(submitted.job_id)

    seen = _run(conn_id, EmrStepsBackend, {}, status)
    assert seen.key == key, "the key is read back from the step names"
    assert seen.state is JobState.CANCELLING and seen.backend_state == "CANCEL_PENDING"
    aws.held.discard(ref.step_ids[0])
    _run(conn_id, EmrStepsBackend, {}, lambda b: b.cancel(submitted.job_id))


def test_find_jobs_returns_the_live_submissions_of_exactly_one_family_newest_first(
        aws: MotoAws, conn_id: str, cluster_id: str) -> None:
    [first, second], other = _keys()
    options = {"cluster_id": cluster_id}

    async def submit(backend: EmrStepsBackend) -> tuple[Any, ...]:
        old = await backend.submit(StepsRequest(cluster_id, (_raw_step("a", 0.2), _raw_step("b", 60))), key=first)
        new = await backend.submit(StepsRequest(cluster_id, (_raw_step("c", 60),)), key=second)
        foreign = await backend.submit(StepsRequest(cluster_id, (_raw_step("d", 60),)), key=other)
        return old, new, foreign

    old, new, foreign = _run(conn_id, EmrStepsBackend, options, submit)
    done = StepsRef.parse(old.job_id).step_ids[0]
    wait_until(lambda: aws.step(cluster_id, done).state == "COMPLETED", what="the old submission's first step")

    async def look(backend: EmrStepsBackend) -> tuple[Any, ...]:
        family = parse_key(first).family  # type: ignore[union-attr]
        return await backend.find_jobs(family), await backend.find_by_key(first), await backend.find_by_key(
            f"{family}-9")

    found, exact, none = _run(conn_id, EmrStepsBackend, options, look)
    assert [s.job_id for s in found] == [new.job_id, old.job_id], "newest first, the other run's key left out"
    assert [s.key for s in found] == [second, first]
    assert exact is not None and exact.job_id == old.job_id and exact.key == first
    assert none is None, "find_by_key matches the exact key, never another generation"
    for job in (old, new, foreign):
        _run(conn_id, EmrStepsBackend, {}, lambda b, j=job: b.cancel(j.job_id))


def test_cancel_leaves_steps_of_another_key_alone(aws: MotoAws, conn_id: str, cluster_id: str) -> None:
    [mine, _], other = _keys()

    async def body(backend: EmrStepsBackend) -> None:
        theirs = await backend.submit(StepsRequest(cluster_id, (_raw_step("theirs", 60),)), key=other)
        await backend.cancel(theirs.job_id, key=mine)
        assert aws.proxy.ops("CancelSteps") == 0, "a job that carries another key is not cancelled"
        await backend.cancel(theirs.job_id, key=other)
        assert aws.proxy.ops("CancelSteps") == 1

    aws.proxy.clear()
    _run(conn_id, EmrStepsBackend, {}, body)


# -- EMR Serverless -------------------------------------------------------------------------------


def _job_run(application_id: str, name: str) -> JobRunRequest:
    return JobRunRequest(application_id, ROLE, {"sparkSubmit": {"entryPoint": "s3://code/forever.py"}}, name=name)


def test_serverless_runs_carry_their_key_are_found_by_family_and_cancelling_is_not_running(
        aws: MotoAws, conn_id: str, application_id: str) -> None:
    [first, second], other = _keys()
    options = {"application_id": application_id, "execution_role_arn": ROLE}
    family = parse_key(first).family  # type: ignore[union-attr]

    async def body(backend: EmrServerlessBackend) -> tuple[Any, ...]:
        old = await backend.submit(_job_run(application_id, "old"), key=first)
        await asyncio.sleep(1.1)  # createdAt has second resolution
        new = await backend.submit(_job_run(application_id, "new"), key=second)
        foreign = await backend.submit(_job_run(application_id, "foreign"), key=other)
        return old, new, foreign, await backend.find_jobs(family), await backend.find_by_key(first)

    old, new, foreign, found, exact = _run(conn_id, EmrServerlessBackend, options, body)
    assert [s.job_id for s in found] == [new.job_id, old.job_id] and [s.key for s in found] == [second, first]
    assert exact is not None and exact.job_id == old.job_id
    ref = old.job_id.split(":")
    aws.job_run(ref[0], ref[1]).state = "CANCELLING"  # CancelJobRun or executionTimeoutMinutes under way

    async def look(backend: EmrServerlessBackend) -> Any:
        status = await backend.status(old.job_id)
        await backend.cancel(foreign.job_id, key=first)
        return status

    aws.proxy.clear()
    status = _run(conn_id, EmrServerlessBackend, options, look)
    assert status.state is JobState.CANCELLING and status.key == first
    assert aws.proxy.ops("CancelJobRun") == 0, "a run that carries another key is not cancelled"
    for job in (old, new, foreign):
        _run(conn_id, EmrServerlessBackend, options, lambda b, j=job: b.cancel(j.job_id))


def test_serverless_client_token_is_per_try_so_a_resend_dedups_and_a_retry_does_not(
        aws: MotoAws, conn_id: str, application_id: str) -> None:
    ti = FakeTI(task_id="token", run_id=f"manual__{uuid.uuid4().hex[:8]}")
    tokens = []
    for try_number in (1, 1, 2):
        aws.proxy.clear()
        op = EmrServerlessStartJobOperator(task_id="token", aws_conn_id=conn_id, application_id=application_id,
                                           execution_role_arn=ROLE, deferrable=True, reattach=False,
                                           job_driver={"sparkSubmit": {"entryPoint": APP,
                                                                       "entryPointArguments": ["0.2", "0"]}})
        defer(op, FakeTI(task_id="token", run_id=ti.run_id, try_number=try_number))
        [request] = aws.proxy.requests_of("StartJobRun")
        tokens.append(request["clientToken"])
    assert tokens[0] == tokens[1], "the same try sends the same token: AWS hands a resend the same run"
    assert tokens[1] != tokens[2], "a retry sends its own token: never the earlier try's run back"
    assert all(parse_key(t.rsplit(".", 1)[0]) for t in tokens), "the token is the key and the try"


# -- clusters -----------------------------------------------------------------------------------


def test_clusters_are_found_by_their_key_tag_and_described_once(aws: MotoAws, conn_id: str) -> None:
    [first, second], other = _keys()
    family = parse_key(first).family  # type: ignore[union-attr]

    async def body(backend: EmrClusterBackend) -> tuple[Any, ...]:
        made = []
        for key in (first, second, other):
            made.append(await backend.submit(JobFlowRequest(_overrides(f"keys-{uuid.uuid4().hex[:6]}")), key=key))
            await asyncio.sleep(1.1)  # CreationDateTime has second resolution
        found = await backend.find_jobs(family)
        described = aws.proxy.ops("DescribeCluster")
        again = await backend.find_jobs(family)
        status = await backend.status(made[0].job_id)
        return made, found, again, described, status

    aws.proxy.clear()
    made, found, again, described, status = _run(conn_id, EmrClusterBackend, {}, body)
    assert [s.job_id for s in found] == [made[1].job_id, made[0].job_id], "newest first, one family only"
    assert [s.key for s in found] == [second, first]
    assert [s.job_id for s in again] == [s.job_id for s in found]
    assert aws.proxy.ops("DescribeCluster") == described + 1, "a cluster's tag is read once (+1: the status)"
    assert status.key == first
    for job in made:
        _run(conn_id, EmrClusterBackend, {}, lambda b, j=job: b.cancel(j.job_id))


def test_a_lost_run_job_flow_answer_never_leaves_a_second_cluster(aws: MotoAws, conn_id: str) -> None:
    name = f"lost-{uuid.uuid4().hex[:6]}"
    ti = FakeTI(task_id="create", run_id=f"manual__{uuid.uuid4().hex[:8]}")

    def operator() -> EmrCreateJobFlowOperator:
        return EmrCreateJobFlowOperator(task_id="create", aws_conn_id=conn_id, emr_conn_id=None,
                                        job_flow_overrides=_overrides(name), deferrable=True,
                                        wait_for_completion=True, ledger=MemoryLedger())

    aws.proxy.clear()
    first: str | None = None
    with aws.proxy.faults(aws_fault("lose", operation="RunJobFlow")):
        try:  # the cluster is created, but this try never hears its id from RunJobFlow ...
            first = defer(operator(), ti).job_id  # ... and may find it by its tag at once
        except Exception:  # or fail, leaving it to the next try
            first = None
    clusters = [c for c in aws.emr.clusters.values() if c.name == name]
    assert len(clusters) == 1 and clusters[0]._tags[KEY_TAG].startswith("asa-")
    assert first in (None, clusters[0].id)
    retry = defer(operator(), FakeTI(task_id="create", run_id=ti.run_id, try_number=2))
    assert retry.job_id == clusters[0].id, "the retry finds the cluster by its key tag"
    assert aws.proxy.ops("RunJobFlow") == 1, "and creates no second billed cluster"
    assert len([c for c in aws.emr.clusters.values() if c.name == name]) == 1
    _run(conn_id, EmrClusterBackend, {}, lambda b: b.cancel(retry.job_id))


def test_a_terminating_cluster_is_cancelling_and_one_of_another_key_is_not_terminated(
        aws: MotoAws, conn_id: str) -> None:
    [mine, _], other = _keys()

    async def body(backend: EmrClusterBackend) -> Any:
        theirs = await backend.submit(JobFlowRequest(_overrides(f"theirs-{uuid.uuid4().hex[:6]}")), key=other)
        await backend.cancel(theirs.job_id, key=mine)
        assert aws.proxy.ops("TerminateJobFlows") == 0, "a cluster tagged with another key is not terminated"
        aws.emr.clusters[theirs.job_id].state = "TERMINATING"
        return theirs, await backend.status(theirs.job_id)

    aws.proxy.clear()
    theirs, status = _run(conn_id, EmrClusterBackend, {}, body)
    assert status.state is JobState.CANCELLING and status.key == other
    aws.terminate_cluster(theirs.job_id)
