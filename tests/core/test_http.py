"""HTTP answers become typed errors in one place — proven against a real aiohttp server."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from airflow_spark_async.core.errors import (
    AuthError,
    ConnectionFailed,
    JobNotFoundError,
    RateLimitedError,
    RequestRejected,
    ServerError,
)
from airflow_spark_async.core.http import close_loop_sessions, get_session, parse_retry_after, request_json


async def _reset(request: web.Request) -> web.Response:
    assert request.transport is not None
    request.transport.abort()
    return web.Response()


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.json_response({})


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    routes = {
        "/ok": lambda r: web.json_response({"id": 1}),
        "/429": lambda r: web.json_response({"message": "slow down"}, status=429, headers={"Retry-After": "7"}),
        "/503": lambda r: web.json_response({"message": "maintenance"}, status=503),
        "/401": lambda r: web.json_response({"error": "bad token"}, status=401),
        "/404": lambda r: web.json_response({"msg": "Session '9' not found."}, status=404),
        "/400": lambda r: web.json_response({"message": "bad field"}, status=400),
        "/html": lambda r: web.Response(text="<html>gateway</html>", content_type="text/html"),
    }
    for path, handler in routes.items():

        async def wrapped(request: web.Request, handler=handler) -> web.Response:  # type: ignore[no-untyped-def]
            return handler(request)

        app.router.add_get(path, wrapped)
    app.router.add_get("/reset", _reset)
    app.router.add_get("/slow", _slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await close_loop_sessions()
    await runner.cleanup()


@pytest.mark.parametrize(
    ("path", "error", "text"),
    [
        ("/429", RateLimitedError, "rate limited"),
        ("/503", ServerError, "maintenance"),
        ("/401", AuthError, "bad token"),
        ("/404", JobNotFoundError, "not found"),
        ("/400", RequestRejected, "bad field"),
        ("/html", ServerError, "not JSON"),
        ("/reset", ConnectionFailed, "failed"),
    ],
)
async def test_each_answer_maps_to_its_error(server: str, path: str, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        await request_json(get_session(server), "GET", server + path)


async def test_retry_after_travels_with_a_429(server: str) -> None:
    with pytest.raises(RateLimitedError) as exc:
        await request_json(get_session(server), "GET", server + "/429")
    assert exc.value.retry_after == 7 and exc.value.status == 429


async def test_ok_and_not_found_ok(server: str) -> None:
    session = get_session(server)
    assert await request_json(session, "GET", server + "/ok") == {"id": 1}
    assert await request_json(session, "GET", server + "/404", not_found_ok=True) is None


async def test_one_pooled_session_per_loop_and_endpoint(server: str) -> None:
    assert get_session(server) is get_session(server)
    assert get_session(server) is not get_session("http://127.0.0.1:1")


async def test_cancellation_is_never_swallowed(server: str) -> None:
    task = asyncio.create_task(request_json(get_session(server), "GET", server + "/slow"))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_parse_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("3") == 3.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= (parse_retry_after(date, now=now) or 0) <= 31
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
