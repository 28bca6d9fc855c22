"""Pooled aiohttp sessions, one per (event loop, endpoint), and HTTP errors translated once.

Why pooled: the official Livy trigger opens a new TCP connection for every poll of every
job. Here every trigger of one endpoint in a triggerer shares one keep-alive session, so
a thousand triggers cost a handful of sockets. Sessions belong to the event loop that
made them (aiohttp requires it), hence the per-loop registry; :func:`close_loop_sessions`
closes them when a short-lived loop (the worker's sync bridge) ends.

Every transport failure becomes one of the classes of :mod:`airflow_spark_async.core.errors`
here and nowhere else.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import weakref
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp

from airflow_spark_async.core import clock
from airflow_spark_async.core.errors import (
    AuthError,
    ConnectionFailed,
    JobNotFoundError,
    RateLimitedError,
    RequestRejected,
    ServerError,
)

__all__ = [
    "MAX_RETRY_AFTER",
    "cap_retry_after",
    "close_loop_sessions",
    "close_with_loop",
    "get_session",
    "parse_retry_after",
    "request_json",
]

#: the longest ``Retry-After`` honoured, in seconds. A proxy answering ``Retry-After: 86400`` (or
#: ``inf``) must not freeze every trigger of an endpoint for a day: past this the poll loop's own
#: back-off and error budget decide, and the deadline always wins.
MAX_RETRY_AFTER = 300.0

class _Closable(Protocol):
    async def close(self) -> None: ...


#: per event loop: the pooled sessions, and anything else to close with the loop
_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Closable]] = weakref.WeakKeyDictionary()
#: per-request timeout; a poll that hangs longer is a transient failure, not a stuck trigger
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)


def get_session(endpoint: str, *, verify_ssl: bool = True) -> aiohttp.ClientSession:
    """The shared session of this event loop for ``endpoint`` (scheme://host:port)."""
    loop = asyncio.get_running_loop()
    sessions = _SESSIONS.setdefault(loop, {})
    key = f"{endpoint}|{verify_ssl}"
    session = sessions.get(key)
    if not isinstance(session, aiohttp.ClientSession) or session.closed:
        connector = aiohttp.TCPConnector(limit=32, ssl=verify_ssl, enable_cleanup_closed=True)
        session = aiohttp.ClientSession(connector=connector, timeout=DEFAULT_TIMEOUT)
        sessions[key] = session
    return session


def close_with_loop(key: str, resource: _Closable) -> None:
    """Have :func:`close_loop_sessions` also close ``resource`` (e.g. a backend's own pooled
    clients, such as aiobotocore's, which hold aiohttp sessions of their own)."""
    _SESSIONS.setdefault(asyncio.get_running_loop(), {})[key] = resource


async def close_loop_sessions() -> None:
    """Close every session (and registered resource) of the running loop, before it ends."""
    sessions = _SESSIONS.pop(asyncio.get_running_loop(), {})
    for session in sessions.values():
        await session.close()


def cap_retry_after(seconds: float | None) -> float | None:
    """A server's wait hint made safe: ``None`` unless finite and >= 0, at most ``MAX_RETRY_AFTER``."""
    if seconds is None or isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(float(seconds), MAX_RETRY_AFTER)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), validated and
    capped by :func:`cap_retry_after`; ``None`` for anything else."""
    if not value:
        return None
    value = value.strip()
    try:
        return cap_retry_after(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, OverflowError):
        return None
    return cap_retry_after(max(0.0, when - (clock.now() if now is None else now)))


def _error_text(body: str) -> str:
    """The useful part of an error body: a JSON ``message``/``error`` field, else the start of it."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:500]
    if isinstance(data, dict):
        for field in ("message", "msg", "error_message", "error", "Message"):
            if isinstance(data.get(field), str):
                return data[field][:500]
    return body.strip()[:500]


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    not_found_ok: bool = False,
    text: bool = False,
) -> Any:
    """Send one request and return its decoded JSON body, or raise a typed error.

    ``not_found_ok`` returns ``None`` for a 404 instead of raising ``JobNotFoundError``;
    ``text`` returns the body as a string instead of decoding JSON.
    """
    try:
        async with session.request(method, url, json=json_body, params=params, headers=headers) as resp:
            body = await resp.text()
            status = resp.status
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    except asyncio.CancelledError:
        raise
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as exc:
        raise ConnectionFailed(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
    if status == 429:
        raise RateLimitedError(f"{method} {url} was rate limited (429)", status=status, retry_after=retry_after)
    if status >= 500 or status == 408:  # 408: the server timed the request out; asking again may work
        raise ServerError(
            f"{method} {url} answered {status}: {_error_text(body)}", status=status, retry_after=retry_after
        )
    if status in (401, 403):
        raise AuthError(f"{method} {url} refused the credentials ({status}): {_error_text(body)}", status=status)
    if status == 404:
        if not_found_ok:
            return None
        raise JobNotFoundError(f"{method} {url} answered 404: {_error_text(body)}", status=status)
    if status >= 400:
        raise RequestRejected(f"{method} {url} rejected the request ({status}): {_error_text(body)}", status=status)
    if text:
        return body
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError as exc:
        # A 200 with a body that is not JSON is a proxy or server hiccup, not our bug.
        raise ServerError(f"{method} {url} answered {status} with a body that is not JSON: {body[:200]!r}") from exc
