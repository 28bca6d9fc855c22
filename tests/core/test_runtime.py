"""One runtime per event loop owns what the loop shares, and closes all of it (core/runtime.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest

from airflow_spark_async.core import http
from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.http import HttpOptions
from airflow_spark_async.core.runtime import Runtime, forget_backend, get_backend, run_sync


class _Recorder:
    """Something to close: remembers that it was, and in which order."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def close(self) -> None:
        self.log.append(self.name)


class _Backend:
    """A stand-in for a backend: Runtime only needs ``from_connection`` (and ``aclose`` if any)."""

    built: list[tuple[str, dict[str, Any]]] = []
    closed: list[str] = []
    release: asyncio.Event | None = None
    fail_next = False

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id

    @classmethod
    async def from_connection(cls, conn: Any, options: Mapping[str, Any]) -> _Backend:
        if cls.release is not None:
            await cls.release.wait()
        if cls.fail_next:
            cls.fail_next = False
            raise ConfigurationError("bad connection")
        cls.built.append((conn.conn_id, dict(options)))
        return cls(conn.conn_id)

    async def aclose(self) -> None:
        self.closed.append(self.conn_id)


@pytest.fixture(autouse=True)
def _fresh_backend_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_Backend, "built", [])
    monkeypatch.setattr(_Backend, "closed", [])
    monkeypatch.setattr(_Backend, "release", None)
    monkeypatch.setattr(_Backend, "fail_next", False)
    monkeypatch.setenv("AIRFLOW_CONN_RT_TEST", json.dumps({"conn_type": "http", "host": "example.invalid"}))


async def test_one_runtime_per_loop_and_a_fresh_one_after_close() -> None:
    runtime = Runtime.current()
    assert Runtime.current() is runtime
    await runtime.close()
    assert Runtime.current() is not runtime and runtime.closed


def test_each_loop_has_its_own_runtime() -> None:
    async def current() -> Runtime:
        return Runtime.current()

    assert asyncio.run(current()) is not asyncio.run(current())


async def test_a_backend_is_built_once_per_class_connection_and_options() -> None:
    runtime = Runtime.current()
    first = await runtime.backend(_Backend, "rt_test", {"a": 1})  # type: ignore[type-var]
    assert await runtime.backend(_Backend, "rt_test", {"a": 1}) is first  # type: ignore[type-var]
    assert await get_backend(_Backend, "rt_test", {"a": 1}) is first  # type: ignore[arg-type]
    other = await runtime.backend(_Backend, "rt_test", {"a": 2})  # type: ignore[type-var]
    assert other is not first and _Backend.built == [("rt_test", {"a": 1}), ("rt_test", {"a": 2})]
    await runtime.close()


async def test_concurrent_first_callers_share_one_build() -> None:
    _Backend.release = asyncio.Event()
    runtime = Runtime.current()
    calls = [asyncio.ensure_future(runtime.backend(_Backend, "rt_test", {})) for _ in range(20)]  # type: ignore[type-var]
    await asyncio.sleep(0)
    _Backend.release.set()
    built = await asyncio.wait_for(asyncio.gather(*calls), timeout=30)
    assert len({id(b) for b in built}) == 1 and len(_Backend.built) == 1 and runtime.builds == 1
    await runtime.close()


async def test_one_callers_cancellation_does_not_cancel_the_build_others_await() -> None:
    _Backend.release = asyncio.Event()
    runtime = Runtime.current()
    impatient = asyncio.ensure_future(runtime.backend(_Backend, "rt_test", {}))  # type: ignore[type-var]
    patient = asyncio.ensure_future(runtime.backend(_Backend, "rt_test", {}))  # type: ignore[type-var]
    await asyncio.sleep(0)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    _Backend.release.set()
    assert isinstance(await asyncio.wait_for(patient, timeout=30), _Backend)
    await runtime.close()


async def test_a_failed_build_is_not_cached_and_a_forgotten_backend_is_rebuilt() -> None:
    runtime = Runtime.current()
    _Backend.fail_next = True
    with pytest.raises(ConfigurationError):
        await runtime.backend(_Backend, "rt_test", {})  # type: ignore[type-var]
    first = await runtime.backend(_Backend, "rt_test", {})  # type: ignore[type-var]
    forget_backend(_Backend, "rt_test", {})  # type: ignore[arg-type]
    assert await runtime.backend(_Backend, "rt_test", {}) is not first  # type: ignore[type-var]
    await runtime.close()


async def test_close_closes_backends_then_resources_then_sessions_and_survives_a_failing_one() -> None:
    runtime = Runtime.current()
    order: list[str] = []
    await runtime.backend(_Backend, "rt_test", {})  # type: ignore[type-var]
    session = runtime.session("http://127.0.0.1:1", HttpOptions(total_timeout=5))

    class Broken:
        async def aclose(self) -> None:
            raise RuntimeError("cannot close")

    runtime.on_close("broken", Broken())
    http.close_with_loop("clients", _Recorder("clients", order))
    shared = runtime.shared("pool", lambda: _Recorder("pool", order))
    assert runtime.shared("pool", lambda: _Recorder("other", order)) is shared
    await http.close_loop_sessions()
    assert _Backend.closed == ["rt_test"] and order == ["clients", "pool"] and session.closed


async def test_sessions_and_gates_are_shared_per_key() -> None:
    runtime = Runtime.current()
    assert runtime.session("http://a:1") is http.get_session("http://a:1")
    assert runtime.session("http://a:1") is not runtime.session("http://b:1")
    assert runtime.gate("livy|x") is runtime.gate("livy|x") and runtime.gate("livy|x") is not runtime.gate("y")
    with pytest.raises(TypeError, match="neither close"):
        runtime.on_close("nothing", object())
    await runtime.close()


def test_the_sync_bridge_closes_the_runtime_of_its_short_lived_loop() -> None:
    made: list[Runtime] = []

    async def use() -> bool:
        runtime = Runtime.current()
        made.append(runtime)
        await runtime.backend(_Backend, "rt_test", {})  # type: ignore[type-var]
        return not runtime.session("http://127.0.0.1:1").closed

    assert run_sync(use) is True
    assert made[0].closed and _Backend.closed == ["rt_test"]
