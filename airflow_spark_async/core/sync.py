"""The one bridge from the worker's synchronous code to the async backends.

Operators call backends through :func:`run_sync`; there are no synchronous twins of the
backend methods to keep in step. The private loop's runtime — HTTP sessions, backend
clients, backends — is closed before the loop ends, so no "Unclosed client session"
warnings leak into task logs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_spark_async.core.runtime import Runtime

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_spark_async.core.backend import Backend

__all__ = ["call_backend", "run_sync", "set_runner"]

T = TypeVar("T")

#: replaces the private-loop bridge when set (see :func:`set_runner`); ``None`` in production
_runner: Callable[[Callable[[], Awaitable[Any]]], Any] | None = None


def set_runner(runner: Callable[[Callable[[], Awaitable[Any]]], Any] | None = None) -> None:
    """Run the worker's backend calls with ``runner(make)`` instead of a private event loop.

    A seam for the fault-schedule simulation (``tests/sim``), which runs the worker's code on
    its one virtual-time loop; ``set_runner()`` restores the production bridge.
    """
    global _runner
    _runner = runner


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run ``make()`` to completion on a private event loop and return its result.

    ``make`` is a zero-argument callable returning the awaitable, so that the coroutine is
    created inside the loop that runs it. If this thread already runs a loop (a notebook,
    an async test), the work runs on a fresh thread instead of deadlocking.
    """

    async def main() -> T:
        try:
            return await make()
        finally:
            await Runtime.current().close()

    if _runner is not None:
        return _runner(make)  # type: ignore[no-any-return]
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


def call_backend(
    backend_cls: type[Backend],
    conn_id: str,
    options: Mapping[str, Any],
    call: Callable[[Backend], Awaitable[T]],
    *,
    conn: Connection | None = None,
) -> T:
    """``call(backend)`` on the worker, for the backend of (class, connection, options)."""

    async def run() -> T:
        return await call(await Runtime.current().backend(backend_cls, conn_id, options, conn=conn))

    return run_sync(run)
