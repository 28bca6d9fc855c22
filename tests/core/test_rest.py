"""RestApi: one line per call for a backend, and the throttle gate it cannot forget."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from airflow_spark_async.core.errors import RateLimitedError, ServerError
from airflow_spark_async.core.rest import RestApi
from airflow_spark_async.core.retry import Backoff
from airflow_spark_async.core.runtime import Runtime
from tests.servers.background import serve_app

Server = tuple[str, list[web.Request], list[int]]


@pytest.fixture
async def api_server() -> AsyncIterator[Server]:
    """Answers ``/api/v1/thing`` with the statuses queued in ``answers`` (then 200), recording requests."""
    seen: list[web.Request] = []
    answers: list[int] = []

    async def thing(request: web.Request) -> web.Response:
        seen.append(request)
        status = answers.pop(0) if answers else 200
        headers = {"Retry-After": "0"} if status == 429 else {}
        return web.json_response({"status": status}, status=status, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/api/v1/thing", thing)
    async with serve_app(app) as origin:
        yield f"{origin}/api/v1", seen, answers


def _api(base_url: str, **kwargs: object) -> RestApi:
    return RestApi(base_url, identity="team-a", headers={"User-Agent": "test/1"}, attempts=3,
                   policy=Backoff(base=0.01, cap=0.01), what="Test", **kwargs)  # type: ignore[arg-type]


async def test_a_call_goes_to_the_base_url_with_the_headers_and_is_sent_once(api_server: Server) -> None:
    base_url, seen, answers = api_server
    api = _api(base_url)
    assert await api.call("GET", "thing", params={"active": True}) == {"status": 200}
    assert seen[0].headers["User-Agent"] == "test/1" and seen[0].query["active"] == "true"
    answers.append(503)
    with pytest.raises(ServerError):
        await api.call("GET", "/thing")
    assert len(seen) == 2, "a poll is never retried here"


async def test_a_retried_call_is_throttled_through_the_identitys_shared_gate(api_server: Server) -> None:
    base_url, seen, answers = api_server
    answers += [429, 503]
    assert await _api(base_url).call("POST", "thing", retry=True, json_body={}) == {"status": 200}
    assert len(seen) == 3
    assert Runtime.current().gate("team-a").throttles == 1, "the 429 slows every caller of this identity"
    assert Runtime.current().gate("team-b").throttles == 0
    answers += [429, 429, 429]
    with pytest.raises(RateLimitedError):
        await _api(base_url).call("POST", "thing", retry=True)
