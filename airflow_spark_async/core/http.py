"""HTTP for every REST backend: session options, pooled sessions, errors translated once.

Why pooled: the official Livy trigger opens a new TCP connection for every poll of every
job. Here every trigger of one endpoint in a triggerer shares one keep-alive session, so
a thousand triggers cost a handful of sockets. Sessions belong to the event loop that
made them (aiohttp requires it): the loop's :class:`~airflow_spark_async.core.runtime.Runtime`
keeps them, per (endpoint, :class:`HttpOptions`), and closes them when a short-lived loop
(the worker's sync bridge) ends. :func:`get_session` and :func:`close_loop_sessions` are its
shortcuts.

Every transport failure becomes one of the classes of :mod:`airflow_spark_async.core.errors`
here and nowhere else. So does the one answer a request may recover from by itself: a 401 to
:class:`Credentials` that can be renewed (an OAuth token revoked or expired early) renews them
once and sends the request again; :class:`RefreshingCredentials` adapts a blocking SDK's token
provider to that seam.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email.utils
import functools
import json
import logging
import ssl as ssl_module
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import aiohttp

from airflow_spark_async.core.errors import (
    AuthError,
    ConfigurationError,
    ConnectionFailed,
    JobNotFoundError,
    RateLimitedError,
    RequestRejected,
    ServerError,
    SparkAsyncError,
)
from airflow_spark_async.core.retry import MAX_RETRY_AFTER, cap_retry_after
from airflow_spark_async.core.retry import clock as core_clock
from airflow_spark_async.core.spec import parse_bool, parse_float, parse_str

__all__ = [
    "DEFAULT_OPTIONS",
    "MAX_RETRY_AFTER",
    "Closable",
    "Credentials",
    "HttpOptions",
    "RefreshingCredentials",
    "cap_retry_after",
    "close_loop_sessions",
    "close_with_loop",
    "get_session",
    "parse_retry_after",
    "request_json",
]

log = logging.getLogger(__name__)



class Closable(Protocol):
    """Anything the runtime closes with its loop: a session, a client pool."""

    async def close(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class HttpOptions:
    """How to reach one endpoint: timeouts, TLS (CA bundle, client certificate), proxy.

    Frozen and hashable: the pooled sessions of a loop are keyed by (endpoint, options), so
    triggers share a session exactly when they would configure it alike. Paths, never file
    contents, are kept; ``proxy_password`` is left out of ``repr``.

    :param total_timeout, connect_timeout: seconds per request; a request that hangs longer is a
        transient ``ConnectionFailed``, not a stuck trigger.
    :param verify_ssl: ``False`` skips certificate verification (a self-signed test server).
    :param ca_bundle: a PEM file of the CAs to trust instead of the system's.
    :param client_cert, client_key: PEM files of a client certificate (mutual TLS); the key may be
        in the certificate's file.
    :param proxy: ``http://proxy:3128``; ``proxy_user``/``proxy_password`` for Basic proxy auth.
    """

    total_timeout: float = 30.0
    connect_timeout: float = 10.0
    verify_ssl: bool = True
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    proxy: str | None = None
    proxy_user: str | None = None
    proxy_password: str | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("total_timeout", "connect_timeout"):
            object.__setattr__(self, name, parse_float(getattr(self, name), f"HTTP option {name}", gt=0))
        object.__setattr__(self, "verify_ssl", parse_bool(self.verify_ssl, "HTTP option verify_ssl"))
        for name in ("ca_bundle", "client_cert", "client_key", "proxy", "proxy_user", "proxy_password"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, parse_str(value, f"HTTP option {name}"))
        if self.client_key and not self.client_cert:
            raise ConfigurationError("HTTP option client_key needs client_cert (the certificate it belongs to)")
        if self.proxy and not self.proxy.startswith(("http://", "https://")):
            raise ConfigurationError(f"HTTP option proxy must be an http:// or https:// URL, got {self.proxy!r}")
        if self.proxy_user and self.proxy_password is None:
            raise ConfigurationError("HTTP option proxy_user needs proxy_password")

    @classmethod
    def from_extras(cls, extras: Mapping[str, Any], *, scheme: str = "https") -> HttpOptions:
        """The options in a connection's extras (or ``requests``-style options), strings allowed.

        Read, in ``requests``' spelling where there is one: ``timeout`` (total seconds),
        ``connect_timeout``, ``verify`` / ``verify_ssl`` (a bool, or the path of a CA bundle, as in
        ``requests``), ``ca_bundle``, ``cert`` (a path, or ``[cert, key]``), ``client_cert``,
        ``client_key``, ``proxy``, ``proxies`` (``{"https": url, "http": url}``: the entry of
        ``scheme``), ``proxy_user``, ``proxy_password``. Other keys are left to the caller.
        """
        found: dict[str, Any] = {}
        if (timeout := extras.get("timeout")) is not None:
            found["total_timeout"] = parse_float(timeout, "timeout", gt=0)
        if (connect := extras.get("connect_timeout")) is not None:
            found["connect_timeout"] = parse_float(connect, "connect_timeout", gt=0)
        verify = extras.get("verify", extras.get("verify_ssl"))
        if isinstance(verify, str) and verify.strip().lower() not in _BOOL_WORDS:
            found["ca_bundle"] = verify
        elif verify is not None:
            found["verify_ssl"] = parse_bool(verify, "verify")
        cert = extras.get("cert")
        if isinstance(cert, (list, tuple)) and len(cert) == 2:
            found["client_cert"], found["client_key"] = cert
        elif cert is not None:
            found["client_cert"] = cert
        proxies = extras.get("proxies")
        if isinstance(proxies, Mapping):
            found["proxy"] = proxies.get(scheme) or proxies.get("all")
        elif proxies is not None:
            raise ConfigurationError(f"proxies must be a mapping of scheme to proxy URL, got {proxies!r}")
        for name in ("ca_bundle", "client_cert", "client_key", "proxy", "proxy_user", "proxy_password"):
            if extras.get(name) is not None:
                found[name] = extras[name]
        return cls(**{name: value for name, value in found.items() if value is not None})

    def ssl(self) -> ssl_module.SSLContext | bool:
        """What aiohttp's connector takes as ``ssl``: ``False`` (no verification), ``True`` (the
        system's CAs) or a context with the CA bundle and client certificate loaded."""
        if not self.verify_ssl and not self.client_cert:
            return False
        if not self.ca_bundle and not self.client_cert:
            return True
        return _ssl_context(self)

    def request_kwargs(self, url: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The per-request arguments of ``session.request(method, url, ...)``: ``timeout``, ``proxy``
        and ``headers`` (``headers`` merged with the proxy's credentials, where they must go).

        Proxy credentials are sent as the header itself — on the request for an ``http://`` URL, on
        the ``CONNECT`` for an ``https://`` one — because aiohttp's ``BasicAuth``/``proxy_auth`` are
        deprecated in its newer releases.
        """
        kwargs: dict[str, Any] = {"timeout": self.timeout, "headers": headers}
        if self.proxy:
            kwargs["proxy"] = self.proxy
            if self.proxy_user:
                token = base64.b64encode(f"{self.proxy_user}:{self.proxy_password or ''}".encode()).decode("ascii")
                auth = {"Proxy-Authorization": f"Basic {token}"}
                if url.startswith("https://"):
                    kwargs["proxy_headers"] = auth
                else:
                    kwargs["headers"] = {**(headers or {}), **auth}
        return kwargs

    @property
    def timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.total_timeout, connect=self.connect_timeout)

    def new_session(self) -> aiohttp.ClientSession:
        """A fresh pooled session with these options (the runtime keeps one per loop and endpoint)."""
        connector = aiohttp.TCPConnector(limit=32, ssl=self.ssl(), enable_cleanup_closed=True)
        session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)
        _SESSION_OPTIONS[session] = self
        return session


_BOOL_WORDS = frozenset({"true", "false", "1", "0", "yes", "no", "on", "off"})
#: the options each pooled session was made with, so that :func:`request_json` applies its proxy
_SESSION_OPTIONS: weakref.WeakKeyDictionary[aiohttp.ClientSession, HttpOptions] = weakref.WeakKeyDictionary()


@functools.lru_cache(maxsize=64)
def _ssl_context(options: HttpOptions) -> ssl_module.SSLContext:
    """The TLS context of ``options``, built once per process (it reads the PEM files)."""
    context = ssl_module.create_default_context(cafile=options.ca_bundle)
    if not options.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl_module.CERT_NONE
    if options.client_cert:
        context.load_cert_chain(options.client_cert, options.client_key)
    return context


#: the defaults: 30 s per request, 10 s to connect, the system's CAs, no proxy
DEFAULT_OPTIONS = HttpOptions()
#: per-request timeout of sessions made with the defaults
DEFAULT_TIMEOUT = DEFAULT_OPTIONS.timeout


def get_session(
    endpoint: str, *, verify_ssl: bool = True, options: HttpOptions | None = None
) -> aiohttp.ClientSession:
    """The shared session of this event loop for ``endpoint`` (scheme://host:port) and ``options``
    (``verify_ssl`` alone is the older spelling of ``HttpOptions(verify_ssl=...)``).

    Sessions are owned by :class:`~airflow_spark_async.core.runtime.Runtime`; this is its shortcut.
    """
    from airflow_spark_async.core.runtime import Runtime  # the runtime builds on this module

    return Runtime.current().session(endpoint, options or (DEFAULT_OPTIONS if verify_ssl else
                                                           HttpOptions(verify_ssl=False)))


def close_with_loop(key: str, resource: Closable) -> None:
    """Have the running loop's runtime close ``resource`` with it (``Runtime.current().on_close``)."""
    from airflow_spark_async.core.runtime import Runtime

    Runtime.current().on_close(key, resource)


async def close_loop_sessions() -> None:
    """Close the running loop's runtime — sessions, clients, backends — before the loop ends."""
    from airflow_spark_async.core.runtime import Runtime

    await Runtime.current().close()



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
    return cap_retry_after(max(0.0, when - (core_clock.now() if now is None else now)))


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


class Credentials(Protocol):
    """Auth headers that may go stale, for :func:`request_json`.

    ``headers()`` returns them with their *generation*; after a 401, :func:`request_json` calls
    ``refresh(generation)`` once and sends the request again. Passing the generation lets an
    implementation renew once however many concurrent requests saw the 401.
    """

    async def headers(self) -> tuple[Mapping[str, str], int]: ...

    async def refresh(self, stale_generation: int) -> None: ...


class RefreshingCredentials:
    """:class:`Credentials` from a blocking source — an SDK's token provider — kept off the event loop.

    ``build()`` makes the source (it may do network I/O: OIDC discovery, host metadata) and the
    source returns headers (it may fetch a token); both run in a thread. Headers are reused for
    ``ttl`` seconds — an SDK refreshes its tokens ahead of expiry, so asking it on every request
    only costs thread hops. :meth:`refresh` rebuilds the source once per generation, however many
    callers saw the 401. Errors of the source go through ``translate`` (the SDK's exceptions
    become core errors: permanent or transient); core errors and cancellation pass as they are.

    Thread-safe: several event loops (the worker's sync bridge, the triggerer) may share one.
    """

    def __init__(
        self,
        build: Callable[[], Callable[[], Mapping[str, str]]],
        *,
        ttl: float,
        translate: Callable[[Exception], Exception] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.build = build
        self.ttl = ttl
        self.translate = translate or (lambda exc: ServerError(f"could not get credentials: {exc}"))
        self.clock = clock or core_clock.monotonic
        self.generation = 0
        self._source: Callable[[], Mapping[str, str]] | None = None
        self._lock = threading.Lock()
        #: (headers, generation, fresh until): replaced whole, so threads never see half of it
        self._cached: tuple[dict[str, str], int, float] | None = None

    async def headers(self) -> tuple[dict[str, str], int]:
        cached = self._cached
        if cached is None or self.clock() >= cached[2]:
            headers, generation = await self._in_thread(self._authenticate)
            self._cached = cached = (headers, generation, self.clock() + self.ttl)
        return cached[0], cached[1]

    async def refresh(self, stale_generation: int) -> None:
        await self._in_thread(self._rebuild, stale_generation)

    def _authenticate(self) -> tuple[dict[str, str], int]:
        with self._lock:
            if self._source is None:
                self._source = self.build()
            source, generation = self._source, self.generation
        return dict(source()), generation

    def _rebuild(self, stale_generation: int) -> None:
        with self._lock:
            if self.generation == stale_generation:
                self._source = self.build()
                self.generation += 1
                self._cached = None

    async def _in_thread(self, func: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.to_thread(func, *args)
        except (asyncio.CancelledError, SparkAsyncError):
            raise
        except Exception as exc:
            raise self.translate(exc) from exc


def _query(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Query values as text; booleans in lower case (aiohttp refuses them, REST APIs spell them so)."""
    if not params:
        return None
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    credentials: Credentials | None = None,
    not_found_ok: bool = False,
    text: bool = False,
) -> Any:
    """Send one request and return its decoded JSON body, or raise a typed error.

    ``credentials`` adds their headers and, on a 401, are renewed once before the request is sent
    again; a second 401 raises ``AuthError`` (then the caller may re-read its connection: a
    rotated secret). ``not_found_ok`` returns ``None`` for a 404 instead of raising
    ``JobNotFoundError``; ``text`` returns the body as a string instead of decoding JSON. The
    proxy and timeout are those of the :class:`HttpOptions` the session was made with.
    """
    if credentials is None:
        return await _request(session, method, url, json_body, _query(params), headers, not_found_ok, text)
    for renewed in (False, True):
        auth, generation = await credentials.headers()
        try:
            return await _request(session, method, url, json_body, _query(params), {**(headers or {}), **auth},
                                  not_found_ok, text)
        except AuthError as exc:
            if exc.status != 401 or renewed:
                raise
            log.info("%s %s answered 401; renewing the credentials once", method, url)
            await credentials.refresh(generation)
    raise AssertionError("unreachable")  # pragma: no cover


async def _request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    json_body: Any,
    params: Mapping[str, str] | None,
    headers: Mapping[str, str] | None,
    not_found_ok: bool,
    text: bool,
) -> Any:
    per_request = _SESSION_OPTIONS.get(session, DEFAULT_OPTIONS).request_kwargs(url, headers)
    try:
        async with session.request(method, url, json=json_body, params=params, **per_request) as resp:
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
