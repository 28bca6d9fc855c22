"""The one clock the core reads, so that a simulation can run hours of polling in milliseconds.

Production reads the wall clock (deadlines are absolute epoch seconds carried in trigger
kwargs, so they must survive a restart on another machine) and sleeps with asyncio. The
fault-schedule simulation in ``tests/sim`` installs a clock driven by its virtual event
loop instead; nothing else in the package calls ``time.time()`` for a decision.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["monotonic", "now", "set_clock", "sleep_until"]

_now: Callable[[], float] = time.time
_monotonic: Callable[[], float] = time.monotonic


def now() -> float:
    """Epoch seconds (virtual inside a simulation)."""
    return _now()


def monotonic() -> float:
    """Seconds of a clock that never goes back (virtual inside a simulation)."""
    return _monotonic()


def set_clock(now_fn: Callable[[], float] | None = None, monotonic_fn: Callable[[], float] | None = None) -> None:
    """Install another clock; ``set_clock()`` restores the real one."""
    global _now, _monotonic
    _now = now_fn or time.time
    _monotonic = monotonic_fn or time.monotonic


async def sleep_until(when: float, deadline: float | None = None) -> None:
    """Sleep until epoch second ``when``, or ``deadline`` if that comes first."""
    if deadline is not None:
        when = min(when, deadline)
    await asyncio.sleep(max(0.0, when - now()))
