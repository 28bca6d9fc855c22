"""The one back-off rule, the shared throttle gate and bounded API retries (core/retry.py)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import pytest

from airflow_spark_async.core.errors import (
    AuthError,
    ConfigurationError,
    ConnectionFailed,
    JobNotFoundError,
    RateLimitedError,
    RequestRejected,
    ServerError,
)
from airflow_spark_async.core.http import MAX_RETRY_AFTER
from airflow_spark_async.core.retry import Backoff, PollPolicy, ThrottleGate, backoff, retry_call

FAST = Backoff(base=0.001, cap=0.001)


def _failing(*errors: Exception, result: str = "ok") -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """A call that raises ``errors`` one per call, then returns ``result``; and its call count."""
    calls = [0]

    async def call() -> str:
        calls[0] += 1
        if calls[0] <= len(errors):
            raise errors[calls[0] - 1]
        return result

    return call, calls


def test_backoff_is_equal_jitter_doubling_up_to_the_cap() -> None:
    rng = random.Random(3)
    for errors, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (10, 60.0), (10_000, 60.0)]:
        delays = [backoff(errors, base=2.0, cap=60.0, rng=rng) for _ in range(200)]
        assert min(delays) >= ceiling / 2 and max(delays) <= ceiling
        assert len({round(d, 6) for d in delays}) > 150, "callers that failed together leave apart"
    assert [backoff(n, base=1.0, cap=5.0, jitter=False) for n in (0, 1, 2, 3, 4)] == [1.0, 1.0, 2.0, 4.0, 5.0]


@pytest.mark.parametrize(("hint", "floor"), [(30.0, 30.0), (86400.0, MAX_RETRY_AFTER), (float("inf"), 0.0),
                                             (float("nan"), 0.0), (-5.0, 0.0), (None, 0.0)])
def test_a_retry_after_hint_is_a_floor_once_validated_and_capped(hint: float | None, floor: float) -> None:
    delay = backoff(1, base=1.0, cap=1.0, retry_after=hint, rng=random.Random(1))
    assert delay >= max(floor, 0.5) and delay <= max(floor, 1.0)


def test_poll_policy_backs_off_by_the_same_rule() -> None:
    policy = PollPolicy(backoff_base=2.0, backoff_max=30.0)
    assert policy.backoff(3, rng=random.Random(5)) == backoff(3, base=2.0, cap=30.0, rng=random.Random(5))
    assert policy.backoff(1, retry_after=40.0) == 40.0


def test_max_delay_bounds_even_the_servers_hint() -> None:
    assert Backoff(base=1.0, cap=60.0, max_delay=10.0).delay(20, retry_after=250.0) == 10.0
    with pytest.raises(ConfigurationError, match="base must be a number"):
        Backoff(base=0)
    with pytest.raises(ConfigurationError, match="max_delay"):
        Backoff(max_delay=float("inf"))


@pytest.mark.parametrize("error", [ServerError("503"), ConnectionFailed("reset"), RateLimitedError("429")])
async def test_transient_errors_are_retried_until_the_call_succeeds(error: Exception) -> None:
    call, calls = _failing(error, error)
    assert await retry_call(call, attempts=3, what="test call", policy=FAST) == "ok"
    assert calls[0] == 3


@pytest.mark.parametrize("error", [AuthError("401"), RequestRejected("400"), JobNotFoundError("404"), KeyError("bug")])
async def test_permanent_errors_and_bugs_are_never_retried(error: Exception) -> None:
    call, calls = _failing(error)
    with pytest.raises(type(error)):
        await retry_call(call, attempts=5, what="test call", policy=FAST)
    assert calls[0] == 1


async def test_the_last_transient_error_is_raised_after_all_attempts() -> None:
    last = ServerError("still down")
    call, calls = _failing(ServerError("down"), last)
    with pytest.raises(ServerError) as raised:
        await retry_call(call, attempts=2, what="test call", policy=FAST)
    assert raised.value is last and calls[0] == 2


async def test_the_servers_retry_after_is_waited_for() -> None:
    call, _ = _failing(RateLimitedError("429", retry_after=0.2))
    started = time.monotonic()
    await retry_call(call, attempts=2, what="test call", policy=FAST)
    assert time.monotonic() - started >= 0.2


async def test_a_retry_that_would_end_after_the_deadline_is_not_attempted() -> None:
    """Never sleep past the caller's deadline: the error goes back at once, for the caller's own loop."""
    call, calls = _failing(ServerError("down"))
    started = time.monotonic()
    with pytest.raises(ServerError):
        await retry_call(call, attempts=5, what="test call", deadline=time.time() + 1.0,
                         policy=Backoff(base=30.0, cap=30.0))
    assert calls[0] == 1 and time.monotonic() - started < 1.0


async def test_a_throttled_call_closes_the_shared_gate_for_every_caller() -> None:
    gate = ThrottleGate(base=0.2, cap=0.2, rng=random.Random(2))
    call, _ = _failing(RateLimitedError("429"))
    await retry_call(call, attempts=2, what="test call", gate=gate, policy=FAST)
    assert gate.throttles == 1 and gate.strikes == 0, "the success afterwards lowered the strike count"
    gate.throttled()
    other, other_calls = _failing()
    started = time.monotonic()
    await retry_call(other, attempts=1, what="another caller", gate=gate)
    assert other_calls[0] == 1 and time.monotonic() - started >= 0.1, "it waited at the closed gate"


async def test_a_gate_closed_past_the_deadline_fails_the_call_without_sleeping() -> None:
    gate = ThrottleGate(rng=random.Random(1), max_wait=60.0)
    gate.throttled(retry_after=30.0)
    call, calls = _failing()
    started = time.monotonic()
    with pytest.raises(RateLimitedError) as raised:
        await retry_call(call, attempts=3, what="test call", gate=gate, deadline=time.time() + 2.0)
    assert calls[0] == 0 and time.monotonic() - started < 1.0
    assert raised.value.retry_after is not None and raised.value.retry_after >= 29.0


async def test_cancellation_is_never_swallowed() -> None:
    started = asyncio.Event()

    async def hangs() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    task = asyncio.ensure_future(retry_call(hangs, attempts=3, what="test call", policy=FAST))
    await asyncio.wait_for(started.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("attempts", [0, -1, True, 1.5])
async def test_attempts_must_be_a_positive_integer(attempts: object) -> None:
    call, _ = _failing()
    with pytest.raises(ConfigurationError, match="attempts"):
        await retry_call(call, attempts=attempts, what="test call")  # type: ignore[arg-type]
