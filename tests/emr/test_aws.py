"""The AWS plumbing: shared clients, credentials (rotation, expiry, role assumption), throttling,
error translation, and an event loop that never waits on client set-up."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from airflow_spark_async.core.errors import (
    AuthError,
    ConnectionFailed,
    JobNotFoundError,
    RateLimitedError,
    RequestRejected,
    ServerError,
)
from airflow_spark_async.core.http import MAX_RETRY_AFTER, close_loop_sessions
from airflow_spark_async.core.retry import ThrottleGate
from airflow_spark_async.core.runtime import get_backend
from airflow_spark_async.emr.aws import CredentialsExpired, translate_error
from airflow_spark_async.emr.clusters import EmrClusterBackend
from airflow_spark_async.emr.steps import EmrStepsBackend
from airflow_spark_async.emr.triggers import EmrClusterTrigger, EmrStepsTrigger
from tests.emr.moto_aws import ACCOUNT, MotoAws, aws_fault
from tests.emr.test_steps import _raw_step


def _client_error(code: str, status: int, message: str = "m", headers: dict[str, str] | None = None) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message},
                     "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}}}
    return ClientError(response, "ListSteps")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_client_error("ThrottlingException", 400), RateLimitedError),
        (_client_error("TooManyRequestsException", 429, headers={"retry-after": "7"}), RateLimitedError),
        (_client_error("InternalServerError", 400), ServerError),  # EMR's modelled 400 "internal" error
        (_client_error("ServiceUnavailable", 503), ServerError),
        (_client_error("500", 500, "<html><h1>Internal Server Error</h1></html>"), ServerError),
        (_client_error("ExpiredTokenException", 400), CredentialsExpired),
        (_client_error("UnrecognizedClientException", 400), AuthError),
        (_client_error("AccessDeniedException", 403), AuthError),
        (_client_error("ResourceNotFoundException", 400), JobNotFoundError),
        (_client_error("ValidationException", 400), RequestRejected),
        (EndpointConnectionError(endpoint_url="http://x"), ConnectionFailed),
        (ReadTimeoutError(endpoint_url="http://x"), ConnectionFailed),
    ],
)
def test_botocore_errors_become_the_core_error_tree_in_one_place(error: Exception, expected: type) -> None:
    translated = translate_error(error, "emr ListSteps")
    assert type(translated) is expected
    assert "emr ListSteps" in str(translated) and "<h1>" not in str(translated)


def test_retry_after_of_a_throttling_answer_is_kept() -> None:
    translated = translate_error(_client_error("TooManyRequestsException", 429, headers={"retry-after": "7"}), "x")
    assert isinstance(translated, RateLimitedError) and translated.retry_after == 7.0


def test_throttle_gate_spreads_the_waiters_it_holds_back() -> None:
    now = [100.0]
    gate = ThrottleGate(base=2.0, rng=random.Random(7), clock=lambda: now[0])
    pause = gate.throttled()
    assert 1.0 <= pause <= 2.0, "equal jitter: half the ceiling fixed, half random"
    delays = [gate.delay() for _ in range(50)]
    assert min(delays) >= pause and len({round(d, 3) for d in delays}) > 40, "each waiter leaves at its own time"
    assert gate.throttled() > 0 and gate.strikes == 2
    assert gate.throttled(retry_after=30) >= 30, "Retry-After is a floor"
    gate.succeeded()
    assert gate.strikes == 2


@pytest.mark.parametrize("hint", [float("inf"), float("nan"), 86400.0, -3.0])
def test_throttle_gate_caps_and_validates_the_throttle_hint(hint: float) -> None:
    """``Retry-After: inf`` (or a day) from one answer must not close the gate for every caller for ever."""
    now = [100.0]
    gate = ThrottleGate(rng=random.Random(1), clock=lambda: now[0])
    pause = gate.throttled(retry_after=hint)
    assert 0 < pause <= MAX_RETRY_AFTER and gate.not_before <= now[0] + MAX_RETRY_AFTER


def test_a_call_at_a_gate_closed_longer_than_it_may_wait_fails_fast_as_rate_limited() -> None:
    """The gate never holds a caller past ``max_wait`` or its own budget (the trigger's deadline):
    the caller gets a RateLimitedError at once, and the core's loop waits, bounded by the deadline."""
    gate = ThrottleGate(rng=random.Random(1), max_wait=5.0)
    gate.throttled(retry_after=250.0)

    async def waits(budget: float | None) -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RateLimitedError) as raised:
            await asyncio.wait_for(gate.wait(budget=budget), timeout=30)
        assert raised.value.retry_after is not None and 200 <= raised.value.retry_after <= MAX_RETRY_AFTER
        return loop.time() - started

    assert asyncio.run(waits(None)) < 1.0, "longer than max_wait: no sleep at all"
    assert asyncio.run(waits(0.0)) < 1.0, "a deadline already reached: no sleep at all"
    short = ThrottleGate(rng=random.Random(1), base=0.1, cap=0.1)
    short.throttled()
    asyncio.run(asyncio.wait_for(short.wait(budget=5.0), timeout=5))  # a short closure is simply waited out


async def _backends(conn_id: str) -> tuple[Any, Any, Any]:
    steps = await get_backend(EmrStepsBackend, conn_id, {})
    clusters = await get_backend(EmrClusterBackend, conn_id, {})
    elsewhere = await get_backend(EmrStepsBackend, conn_id, {"region_name": "eu-west-1"})
    return steps, clusters, elsewhere


def test_one_client_per_connection_region_and_endpoint_shared_by_every_backend(aws: MotoAws, conn_id: str) -> None:
    async def check() -> None:
        try:
            steps, clusters, elsewhere = await _backends(conn_id)
            assert steps.client is clusters.client, "steps and cluster watches share one EMR client"
            assert elsewhere.client is not steps.client and elsewhere.settings.region_name == "eu-west-1"
            assert steps.watch_key == clusters.watch_key != elsewhere.watch_key
        finally:
            await close_loop_sessions()

    asyncio.run(check())


def test_throttling_slows_every_watch_sharing_the_client(aws: MotoAws, conn_id: str, cluster_id: str) -> None:
    step_id = aws.client("emr").add_job_flow_steps(JobFlowId=cluster_id, Steps=[_raw_step("x", 2.5)])["StepIds"][0]
    steps = EmrStepsTrigger(conn_id=conn_id, job_id=f"{cluster_id}:{step_id}", policy={"interval": 0.3})
    cluster = EmrClusterTrigger(conn_id=conn_id, job_id=cluster_id, policy={"interval": 0.05},
                                stop_states=["TERMINATED"])

    async def run_both() -> list[dict[str, Any]]:
        try:
            watch = asyncio.create_task(anext(cluster.run()))
            await asyncio.sleep(0.5)
            aws.proxy.inject(aws_fault("throttle", 1, "ListSteps"))
            event = await anext(steps.run())
            aws.terminate_cluster(cluster_id)
            return [event.payload, (await watch).payload]
        finally:
            await close_loop_sessions()

    events = asyncio.run(run_both())
    times = list(aws.proxy.timeline)
    assert [e["status"] for e in events] == ["success", "success"]
    assert aws.proxy.injected == [("throttle", "ListSteps")]
    throttled_at = next(t for op, t in times if op == "ListSteps")
    # Unslowed, the cluster watch (every 0.05 s) would ask about nine times in the 0.45 s after the
    # throttle. The shared gate stays closed >= 0.5 s from the moment the client read the throttling
    # answer, so only a DescribeCluster already on its way may arrive in that window: one, or two on
    # a loaded machine that read the answer late. Counted, not timed, so load cannot fail it.
    window = [t for op, t in times if op == "DescribeCluster" and throttled_at < t < throttled_at + 0.45]
    assert len(window) <= 2, f"after ListSteps was throttled, the cluster watch went on asking: {window}"
    assert any(op == "DescribeCluster" and t >= throttled_at + 0.45 for op, t in times), "the watch went on after"


def _set_connection(aws: MotoAws, conn_id: str, **kwargs: Any) -> None:
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = aws.conn_json(**kwargs)


def test_expired_credentials_are_reloaded_from_the_connection_and_the_call_retried_once(
        aws: MotoAws, conn_id: str, cluster_id: str) -> None:
    step_id = aws.client("emr").add_job_flow_steps(JobFlowId=cluster_id, Steps=[_raw_step("x", 60)])["StepIds"][0]
    job_id = f"{cluster_id}:{step_id}"

    async def poll_twice() -> None:
        try:
            backend = await get_backend(EmrStepsBackend, conn_id, {})
            await backend.status(job_id)  # signed with the first key
            _set_connection(aws, conn_id, login="AKIAASAEMRROTATED001")  # the secret was rotated
            aws.proxy.inject(aws_fault("expired", 1, "ListSteps"))
            status = await backend.status(job_id)
            assert status.backend_state == "RUNNING"
        finally:
            await close_loop_sessions()

    asyncio.run(poll_twice())
    keys = [key for op, key in aws.proxy.signed_with if op == "ListSteps"]
    assert keys == ["AKIAASAEMRTEST000001", "AKIAASAEMRTEST000001", "AKIAASAEMRROTATED001"]
    aws.set_step(aws.step(cluster_id, step_id), "CANCELLED")


def test_credentials_that_stay_expired_end_the_watch_with_an_auth_error(aws: MotoAws, conn_id: str,
                                                                        cluster_id: str) -> None:
    step_id = aws.client("emr").add_job_flow_steps(JobFlowId=cluster_id, Steps=[_raw_step("x", 60)])["StepIds"][0]
    # two per reading of the connection: the client's own reload, then the core's (after AuthError)
    aws.proxy.inject(aws_fault("expired", 4, "ListSteps"))
    trigger = EmrStepsTrigger(conn_id=conn_id, job_id=f"{cluster_id}:{step_id}", policy={"interval": 0.5})

    async def run() -> dict[str, Any]:
        try:
            return (await anext(trigger.run())).payload
        finally:
            await close_loop_sessions()

    event = asyncio.run(run())
    assert event["status"] == "error" and "ExpiredTokenException" in event["message"]
    aws.set_step(aws.step(cluster_id, step_id), "CANCELLED")


def test_a_role_in_the_connection_is_assumed_and_its_credentials_sign_the_calls(aws: MotoAws,
                                                                                cluster_id: str) -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/asa-emr-operator"
    with aws.connection(f"role_{uuid.uuid4().hex[:6]}", role_arn=role,
                        assume_role_kwargs={"DurationSeconds": 900}) as conn_id:
        aws.proxy.clear()

        async def describe() -> str:
            try:
                backend = await get_backend(EmrClusterBackend, conn_id, {})
                return (await backend.status(cluster_id)).backend_state
            finally:
                await close_loop_sessions()

        assert asyncio.run(describe()) == "WAITING"
    signed = dict(aws.proxy.signed_with)
    assert signed["AssumeRole"] == "AKIAASAEMRTEST000001", "the connection's own keys assume the role"
    assert signed["DescribeCluster"].startswith("ASIA"), "the role's temporary keys sign the EMR call"


def test_client_set_up_never_blocks_the_event_loop(tmp_path: Path) -> None:
    """In a fresh interpreter (nothing cached): build a client while a 2 ms ticker runs on the loop."""
    script = tmp_path / "lag.py"
    script.write_text(textwrap.dedent("""
        import asyncio, json, time
        from airflow_spark_async.emr.aws import AwsSettings, aws_client

        async def main():
            gaps, done = [], asyncio.Event()
            async def tick():
                last = time.perf_counter()
                while not done.is_set():
                    await asyncio.sleep(0.002)
                    now = time.perf_counter(); gaps.append(now - last); last = now
            ticker = asyncio.create_task(tick())
            await asyncio.sleep(0.05)
            settings = AwsSettings(conn_id="x", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                                   access_key="a", secret_key="b")
            client = await aws_client(settings, "emr")
            await client._ensure()
            done.set(); await ticker; await client.close()
            print(json.dumps({"max_gap": max(gaps)}))

        asyncio.run(main())
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120,
                         check=True)
    max_gap = json.loads(out.stdout.strip().splitlines()[-1])["max_gap"]
    assert max_gap < 0.25, f"the loop stalled {max_gap:.3f}s while a client was built"


def test_a_throttling_storm_backs_off_exponentially_without_multiplying_the_calls(aws: MotoAws, conn_id: str,
                                                                                 cluster_id: str) -> None:
    """Ten triggers on one cluster meet four throttling answers in a row: the client's gate holds
    all of them back a little longer each time (>= 0.5 + 1 + 2 + 4 s in all), the storm costs one
    call per attempt rather than one per trigger, and every trigger still succeeds."""
    steps = [_raw_step(f"s{i}", 1) for i in range(10)]
    step_ids = aws.client("emr").add_job_flow_steps(JobFlowId=cluster_id, Steps=steps)["StepIds"]
    triggers = [EmrStepsTrigger(conn_id=conn_id, job_id=f"{cluster_id}:{s}",
                                policy={"interval": 0.5, "backoff_base": 0.2, "error_budget": 10}) for s in step_ids]
    aws.proxy.inject(aws_fault("throttle", 4, "ListSteps"))

    async def run_all() -> list[dict[str, Any]]:
        try:
            return [e.payload for e in await asyncio.gather(*(anext(t.run()) for t in triggers))]
        finally:
            await close_loop_sessions()

    events = asyncio.run(run_all())
    assert [e["status"] for e in events] == ["success"] * 10
    lists = [t for op, t in aws.proxy.timeline if op == "ListSteps"]
    throttled = lists[:4]
    assert throttled[-1] - throttled[0] >= 0.5 + 1 + 2 - 0.1, "each throttle closed the gate longer"
    assert lists[4] - throttled[-1] >= 4 * 0.5 - 0.1, "the fourth throttle held everyone for >= 2 s"
    assert len(aws.proxy.injected) == 4 and len(lists) < 4 + 2 * 10, "one call per attempt, not per trigger"
