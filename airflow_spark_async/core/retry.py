"""Time and waiting, written once for every backend: the clock, the poll policy, back-off,
throttling and bounded retries.

* :data:`clock` — the one clock the core reads (:class:`Clock`), so that the fault-schedule
  simulation can drive hours of polling from a virtual event loop.
* :class:`PollPolicy` — how a trigger polls: interval, back-off, error budget, heartbeat.
* :func:`backoff` — the delay after ``n`` consecutive failures: exponential, "equal jitter"
  (half fixed, half random, so thousands of callers that failed together do not come back
  together), never shorter than a server's validated ``Retry-After``. The trigger's poll loop
  (:meth:`PollPolicy.backoff`), the throttle gate and :func:`retry_call` all use it.
  :class:`Backoff` holds its parameters.
* :class:`ThrottleGate` — shared by every caller of one endpoint and identity: one throttling
  answer slows all of them, and no caller waits at the gate longer than it may.
* :func:`retry_call` — a few bounded retries of one API call (a submit, a cancel, an output
  read) after *transient* errors only. Polls do not use it: the trigger's loop owns their
  back-off and error budget, and a 429 must reach the watcher, which slows every trigger.

Every wait here is bounded twice: by a cap on the server's hint (:func:`cap_retry_after`) and by
the caller's deadline, which is never slept past — a retry that cannot happen before the
deadline is not attempted. Time is read from :data:`clock` and slept with ``asyncio.sleep``, so
the simulation's virtual clock drives all of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from airflow_spark_async.core.errors import ConfigurationError, RateLimitedError, TransientError
from airflow_spark_async.core.spec import from_known_fields

__all__ = [
    "DEFAULT_BACKOFF",
    "GATE_MAX_WAIT",
    "MAX_RETRY_AFTER",
    "Backoff",
    "Clock",
    "PollPolicy",
    "ThrottleGate",
    "backoff",
    "cap_retry_after",
    "clock",
    "retry_call",
    "set_clock",
]


class Clock:
    """The one clock the core reads, so that a simulation can run hours of polling in milliseconds.

    Production reads the wall clock (deadlines are absolute epoch seconds carried in trigger
    kwargs, so they must survive a restart on another machine) and sleeps with asyncio. The
    fault-schedule simulation in ``tests/sim`` installs a clock driven by its virtual event loop
    (:func:`set_clock`); nothing else in the package calls ``time.time()`` for a decision.
    """

    def __init__(self) -> None:
        self._now: Callable[[], float] = time.time
        self._monotonic: Callable[[], float] = time.monotonic

    def now(self) -> float:
        """Epoch seconds (virtual inside a simulation)."""
        return self._now()

    def monotonic(self) -> float:
        """Seconds of a clock that never goes back (virtual inside a simulation)."""
        return self._monotonic()

    def set(self, now_fn: Callable[[], float] | None = None, monotonic_fn: Callable[[], float] | None = None) -> None:
        """Install another clock; ``set()`` restores the real one."""
        self._now = now_fn or time.time
        self._monotonic = monotonic_fn or time.monotonic

    async def sleep_until(self, when: float, deadline: float | None = None) -> None:
        """Sleep until epoch second ``when``, or ``deadline`` if that comes first."""
        if deadline is not None:
            when = min(when, deadline)
        await asyncio.sleep(max(0.0, when - self.now()))


#: the package's clock: ``clock.now()``, ``clock.monotonic()``, ``await clock.sleep_until(t)``
clock = Clock()
#: install another clock (the simulation's); ``set_clock()`` restores the real one
set_clock = clock.set
_CLOCK = clock  # for the classes below whose ``clock`` parameter shadows the name

#: the longest ``Retry-After`` honoured, in seconds. A proxy answering ``Retry-After: 86400`` (or
#: ``inf``) must not freeze every trigger of an endpoint for a day: past this the poll loop's own
#: back-off and error budget decide, and the deadline always wins.
MAX_RETRY_AFTER = 300.0

def cap_retry_after(seconds: float | None) -> float | None:
    """A server's wait hint made safe: ``None`` unless finite and >= 0, at most ``MAX_RETRY_AFTER``."""
    if seconds is None or isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(float(seconds), MAX_RETRY_AFTER)


log = logging.getLogger(__name__)

T = TypeVar("T")

#: the longest a caller waits at a closed :class:`ThrottleGate`; a longer closure fails the call as
#: rate limited, so the long wait happens where the trigger's deadline is known (the core's loop)
GATE_MAX_WAIT = 10.0


def backoff(
    errors: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    jitter: bool = True,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after ``errors`` consecutive failures.

    The ceiling is ``base * 2**(errors-1)``, at most ``cap``. With ``jitter`` the delay is half
    the ceiling plus a random share of the other half; without, the ceiling itself. A server's
    ``retry_after`` is a floor that jitter never shortens — after :func:`cap_retry_after` made it
    safe (``inf``, ``nan``, negative or a day are not a plan).
    """
    ceiling = min(cap, base * 2 ** max(0, min(errors, 64) - 1))
    delay = ceiling / 2 + (rng or random).uniform(0, ceiling / 2) if jitter else ceiling
    return max(delay, cap_retry_after(retry_after) or 0.0)


@dataclasses.dataclass(frozen=True)
class Backoff:
    """The parameters of :func:`backoff`, plus ``max_delay``: a bound on the whole delay, the
    server's hint included (a cancel inside ``on_kill`` must not wait minutes).

    Validated on construction, so a bad ``retry_delay`` option fails at DAG parse time.
    """

    base: float = 1.0
    cap: float = 60.0
    jitter: bool = True
    max_delay: float | None = None

    def __post_init__(self) -> None:
        for name in ("base", "cap", "max_delay"):
            value = getattr(self, name)
            if value is None and name == "max_delay":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigurationError(f"back-off: {name} must be a number of seconds > 0, got {value!r}")

    def delay(self, errors: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``errors`` consecutive failures (see :func:`backoff`)."""
        wait = backoff(errors, base=self.base, cap=self.cap, retry_after=retry_after, jitter=self.jitter, rng=rng)
        return wait if self.max_delay is None else min(wait, self.max_delay)


#: the delays of :func:`retry_call` unless the caller has its own: 1 s, 2 s, 4 s … jittered, at most 60 s
DEFAULT_BACKOFF = Backoff()


class ThrottleGate:
    """Slows every caller of one endpoint (and identity) down after it throttled one of them.

    Each throttling answer pushes the gate's opening further out — :func:`backoff` of the
    number of consecutive throttles, never shorter than a ``Retry-After`` — and each waiter adds
    its own random share when the gate opens, so callers held back together do not come back
    together. A successful call lowers the strike count again.

    **Bounded waits.** A hint is capped at ``MAX_RETRY_AFTER``, and a caller waits at most
    ``max_wait`` seconds (and never past its own ``budget`` or ``deadline``). When the gate stays
    closed longer, :meth:`wait` fails at once, without sleeping, with :class:`RateLimitedError`
    carrying the time left as ``retry_after``: the long wait then happens in the core's poll
    loop, bounded by the trigger's deadline and counted against its error budget.

    Share one gate per endpoint and identity: ``Runtime.current().gate(key)``.

    :param clock: a monotonic clock (the package's ``clock.monotonic`` by default), for tests.
    """

    def __init__(
        self,
        *,
        base: float = 1.0,
        cap: float = 60.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
        max_wait: float = GATE_MAX_WAIT,
    ) -> None:
        self.policy = Backoff(base=base, cap=cap, max_delay=MAX_RETRY_AFTER)
        self.rng = rng or random.Random()
        self.clock: Callable[[], float] = clock or _CLOCK.monotonic
        self.max_wait = max_wait
        self.strikes = 0
        self.not_before = 0.0
        self._spread = 0.0
        self.throttles = 0  # observable, for tests and benchmarks

    def delay(self) -> float:
        """Seconds until this caller may go: the gate's opening plus a random share of its spread."""
        wait = self.not_before - self.clock()
        return 0.0 if wait <= 0 else wait + self.rng.uniform(0, self._spread)

    async def wait(self, *, budget: float | None = None, deadline: float | None = None) -> None:
        """Wait for the gate to open, for at most ``max_wait`` seconds, ``budget`` seconds and
        until ``deadline`` (epoch seconds), whichever is least.

        Raises :class:`RateLimitedError` — before sleeping — when the gate would open later than that.
        """
        limit = self.max_wait
        if budget is not None:
            limit = min(limit, budget)
        if deadline is not None:
            limit = min(limit, deadline - clock.now())
        until = self.clock() + max(0.0, limit)
        # a deadline that further throttles may push out, not an event: hence sleep-and-recheck
        while (pause := self.delay()) > 0:
            if self.clock() + pause > until:
                raise RateLimitedError(
                    f"the endpoint is throttling; its gate opens in {pause:.1f}s, later than this call may wait",
                    retry_after=cap_retry_after(pause),
                )
            await asyncio.sleep(pause)

    def throttled(self, retry_after: float | None = None) -> float:
        """Record a throttling answer; returns how long the gate is now closed."""
        self.throttles += 1
        self.strikes += 1
        pause = self.policy.delay(self.strikes, retry_after, self.rng)
        self.not_before = max(self.not_before, self.clock() + pause)
        self._spread = pause / 2
        return pause

    def succeeded(self) -> None:
        """Record a successful call: one strike fewer."""
        self.strikes = max(0, self.strikes - 1)


async def retry_call(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    what: str,
    deadline: float | None = None,
    gate: ThrottleGate | None = None,
    policy: Backoff = DEFAULT_BACKOFF,
    rng: random.Random | None = None,
) -> T:
    """``await fn()``, retried after transient errors, at most ``attempts`` calls in all.

    Only :class:`~airflow_spark_async.core.errors.TransientError` is retried (``ServerError``,
    ``ConnectionFailed``, ``RateLimitedError`` with its ``retry_after`` as the floor of the delay);
    every other error — ``AuthError``, ``RequestRejected``, ``JobNotFoundError``, a bug — and
    ``CancelledError`` propagate at once. The last transient error is raised as it is.

    :param what: names the call in the log line of each retry (``"databricks POST runs/cancel"``).
    :param deadline: epoch seconds; a retry whose delay would end after it is not attempted (the
        error is raised instead), and ``gate`` waits are bounded by it.
    :param gate: the endpoint's shared :class:`ThrottleGate`: waited at before each call, told
        about each throttling answer (which slows every caller of the endpoint) and each success.
    :param policy: the delays between calls.
    """
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ConfigurationError(f"retry_call({what}): attempts must be an integer >= 1, got {attempts!r}")
    for attempt in range(1, attempts + 1):
        if gate is not None:
            await gate.wait(deadline=deadline)
        try:
            result = await fn()
        except TransientError as exc:
            if gate is not None and isinstance(exc, RateLimitedError):
                gate.throttled(exc.retry_after)
            if attempt >= attempts:
                raise
            pause = policy.delay(attempt, exc.retry_after, rng)
            if deadline is not None and clock.now() + pause > deadline:
                raise
            log.warning("%s failed (%s); retry %d/%d in %.1fs", what, exc, attempt, attempts - 1, pause)
            await asyncio.sleep(pause)
        else:
            if gate is not None:
                gate.succeeded()
            return result
    raise AssertionError("unreachable")  # pragma: no cover


# How a trigger polls: interval, back-off, error budget — validated once, carried in kwargs.
#
# Why a policy object instead of loose arguments: the operator, the sensor and the trigger
# all need the same rules, and the trigger must be rebuilt from JSON after a triggerer
# restart. One frozen dataclass with ``to_dict``/``from_dict`` keeps the three in step.


@dataclasses.dataclass(frozen=True)
class PollPolicy:
    """Polling rules for one job.

    :param interval: seconds between polls while the job runs (> 0).
    :param backoff_base: first delay after a transient error, doubled each further error.
    :param backoff_max: the longest delay between two attempts after errors.
    :param error_budget: consecutive transient errors tolerated before the trigger hands the
        question back to the worker, which re-checks the job and defers again if it still runs.
    :param heartbeat: seconds between "still running, elapsed …" lines in the task log.
    """

    interval: float = 10.0
    backoff_base: float = 2.0
    backoff_max: float = 120.0
    error_budget: int = 20
    heartbeat: float = 300.0

    def __post_init__(self) -> None:
        for field in ("interval", "backoff_base", "backoff_max", "heartbeat"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigurationError(f"poll policy: {field} must be a number of seconds > 0, got {value!r}")
        if isinstance(self.error_budget, bool) or not isinstance(self.error_budget, int) or self.error_budget < 1:
            raise ConfigurationError(f"poll policy: error_budget must be an integer >= 1, got {self.error_budget!r}")

    def backoff(self, errors: int, *, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Delay before the next attempt after ``errors`` consecutive failures.

        The package's one back-off rule, :func:`airflow_spark_async.core.retry.backoff`: "equal
        jitter" (half the exponential delay fixed, half random, so thousands of triggers that
        failed together do not come back together), and a server's ``Retry-After`` as a floor,
        validated and capped first (see ``core.http.MAX_RETRY_AFTER``).
        """
        return backoff(errors, base=self.backoff_base, cap=self.backoff_max, retry_after=retry_after, rng=rng)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PollPolicy:
        return from_known_fields(cls, data, "poll policy")
