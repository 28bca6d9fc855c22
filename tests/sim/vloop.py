"""A virtual-time event loop, and the bridge that runs the worker's synchronous code on it.

Why virtual time: a schedule polls a job for hours of (simulated) time, waits out Retry-After
headers and heartbeat timeouts; with a real clock one schedule would take hours. Here the
loop's clock only moves when nothing is ready: the selector's ``select(timeout)`` advances it
by ``timeout`` and returns no I/O (the model has none), so time jumps to the next timer.

Why greenlets: the operator's ``execute``/``execute_complete`` are synchronous and reach the
backend through ``core.sync.run_sync``. In the simulation that code runs in a greenlet; the
runner installed with ``core.sync.set_runner`` switches back to the loop's task with the
coroutine, the task awaits it *on the virtual loop* (interleaved with the triggers, the
watcher and the Airflow model, deterministically) and switches back with the result. This is
the pattern SQLAlchemy's asyncio layer uses; it keeps one thread and one loop, so a seed
always replays the same interleaving.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import greenlet

T = TypeVar("T")

#: the epoch second the virtual clock starts at (2026-12-01T00:00:00Z), so deadlines look real
EPOCH = 1_796_083_200.0


class SimulationStuck(RuntimeError):
    """Nothing can happen any more (a deadlock), or the next timer lies beyond the horizon:
    something waits for ``inf``/a day-long Retry-After, a liveness failure the checker reports."""


class _VirtualSelector(selectors.SelectSelector):
    """Registers file descriptors (the loop's self-pipe) but never waits on them."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualLoop | None = None

    def select(self, timeout: float | None = None) -> list[Any]:
        loop = self.loop
        assert loop is not None
        if timeout is None:
            raise SimulationStuck("deadlock: nothing is ready and no timer is scheduled")
        if timeout > 0:
            if loop.vtime + timeout > loop.horizon:
                raise SimulationStuck(
                    f"the next timer is {timeout:.0f}s away, past the horizon of {loop.horizon:.0f}s: "
                    "something waits (nearly) forever")
            loop.vtime += timeout
        return []


class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """``run_in_executor`` without threads: the call runs at once, so the schedule stays
    deterministic (asgiref's ``sync_to_async`` is replaced the same way). A thread-pool subclass
    only because asyncio insists on one; it never starts a thread."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting coroutine, as a thread would
            future.set_exception(exc)
        return future


class VirtualLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is a virtual counter (seconds since start)."""

    def __init__(self, horizon: float = 90 * 86400.0) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self.vtime = 0.0
        self.horizon = horizon
        self._clock_resolution = 1e-6
        self.set_default_executor(_InlineExecutor())

    def time(self) -> float:
        return self.vtime

    def now(self) -> float:
        """Virtual epoch seconds, for ``core.clock.now``."""
        return EPOCH + self.vtime


# -- the worker bridge ---------------------------------------------------------------------------

#: "worker" while the loop awaits a coroutine on behalf of a worker greenlet, else "triggerer"/None
ROLE: contextvars.ContextVar[str | None] = contextvars.ContextVar("sim_role", default=None)


class WorkerGreenlet(greenlet.greenlet):
    """A greenlet running one worker process's synchronous code; ``dead_world`` makes every
    further backend call raise, so an abandoned (crashed) worker can never act again."""

    dead_world = False


class WorkerGone(BaseException):
    """Raised into code of a worker whose world is over (a crashed worker's leftovers)."""


def runner(make: Callable[[], Awaitable[T]]) -> T:
    """``core.sync`` runner: hand the coroutine to the loop task that drives this worker."""
    current = greenlet.getcurrent()
    if not isinstance(current, WorkerGreenlet) or current.parent is None:
        raise RuntimeError("run_sync called outside a simulated worker")
    if current.dead_world:
        raise WorkerGone()
    return current.parent.switch(make())  # type: ignore[no-any-return]


class Crashed(BaseException):
    """The simulated worker process died at this point (raised by the model, caught by the driver)."""


async def drive_worker(fn: Callable[[], T]) -> tuple[str, Any, WorkerGreenlet]:
    """Run the synchronous ``fn`` as a worker: ``("return", value)``, ``("raise", exc)`` or
    ``("crash", None)`` when the model killed the worker process at one of its await points."""
    glet = WorkerGreenlet(fn)
    token = ROLE.set("worker")
    try:
        try:
            request = glet.switch()
        except BaseException as exc:
            return "raise", exc, glet
        while not glet.dead:
            try:
                result = await request
            except Crashed:
                return "crash", None, glet
            except BaseException as exc:
                try:
                    request = glet.throw(exc)
                except BaseException as exc2:
                    return "raise", exc2, glet
            else:
                try:
                    request = glet.switch(result)
                except BaseException as exc2:
                    return "raise", exc2, glet
        return "return", request, glet
    finally:
        ROLE.reset(token)


def bury(glet: WorkerGreenlet) -> None:
    """End a crashed worker's greenlet without letting it touch anything (its world is over)."""
    glet.dead_world = True
    if not glet.dead:
        try:
            glet.throw(WorkerGone())
        except BaseException:  # its last gasp is irrelevant: the schedule is checked already
            pass
