"""HTTP answers become typed errors in one place, and HttpOptions (timeouts, TLS, proxy) take
effect — proven against real aiohttp servers: plain, mutual TLS with a private CA, a proxy."""

from __future__ import annotations

import asyncio
import base64
import datetime
import email.utils
import ipaddress
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from airflow_spark_async.core.errors import (
    AuthError,
    ConfigurationError,
    ConnectionFailed,
    JobNotFoundError,
    RateLimitedError,
    RequestRejected,
    ServerError,
)
from airflow_spark_async.core.http import (
    HttpOptions,
    RefreshingCredentials,
    get_session,
    parse_retry_after,
    request_json,
)
from tests.servers.background import serve_app


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
        # accepts one bearer token and echoes the query: for the credentials seam and query values
        "/whoami": lambda r: web.json_response(dict(r.query)) if r.headers.get("Authorization") == "Bearer good"
        else web.json_response({"error": "expired token"}, status=401),
    }
    for path, handler in routes.items():

        async def wrapped(request: web.Request, handler=handler) -> web.Response:  # type: ignore[no-untyped-def]
            return handler(request)

        app.router.add_get(path, wrapped)
    app.router.add_get("/reset", _reset)
    app.router.add_get("/slow", _slow)
    async with serve_app(app) as origin:
        yield origin


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


class TokenSource:
    """A blocking token provider, like an SDK's: each build hands out the next token of ``tokens``
    (the last one for ever) and records the thread it ran in."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.builds = 0
        self.threads: set[int] = set()

    def build(self) -> Callable[[], Mapping[str, str]]:
        self.threads.add(threading.get_ident())
        token = self.tokens[min(self.builds, len(self.tokens) - 1)]
        self.builds += 1
        return lambda: {"Authorization": f"Bearer {token}"}


async def test_a_401_renews_the_credentials_once_and_the_request_is_sent_again(server: str) -> None:
    source = TokenSource("stale", "good")
    credentials = RefreshingCredentials(source.build, ttl=60)
    answer = await request_json(get_session(server), "GET", server + "/whoami", credentials=credentials)
    assert answer == {} and source.builds == 2
    assert threading.get_ident() not in source.threads, "the blocking source ran on the event loop"


async def test_a_second_401_is_an_auth_error_after_one_renewal(server: str) -> None:
    source = TokenSource("revoked")
    with pytest.raises(AuthError, match="401"):
        await request_json(get_session(server), "GET", server + "/whoami",
                           credentials=RefreshingCredentials(source.build, ttl=60))
    assert source.builds == 2


async def test_a_burst_of_401s_renews_the_credentials_once(server: str) -> None:
    source = TokenSource("stale", "good")
    credentials = RefreshingCredentials(source.build, ttl=60)
    await credentials.headers()  # every request below starts from the same stale headers
    session = get_session(server)
    await asyncio.gather(*(request_json(session, "GET", server + "/whoami", credentials=credentials)
                           for _ in range(8)))
    assert source.builds == 2 and credentials.generation == 1


async def test_headers_are_reused_for_their_ttl_then_asked_for_again() -> None:
    now = [0.0]
    calls = []

    def build() -> Callable[[], Mapping[str, str]]:
        return lambda: calls.append(now[0]) or {"Authorization": f"Bearer {len(calls)}"}

    credentials = RefreshingCredentials(build, ttl=60, clock=lambda: now[0])
    first = await credentials.headers()
    now[0] = 59.0
    assert await credentials.headers() == first
    now[0] = 60.0
    assert (await credentials.headers())[0] == {"Authorization": "Bearer 2"} and calls == [0.0, 60.0]


async def test_errors_of_the_source_are_translated_and_core_errors_pass() -> None:
    def broken() -> Callable[[], Mapping[str, str]]:
        raise OSError("no route to the token endpoint")

    def misconfigured() -> Callable[[], Mapping[str, str]]:
        raise ConfigurationError("no such auth type")

    def translate(exc: Exception) -> Exception:
        return ConnectionFailed(f"token endpoint: {exc}")

    with pytest.raises(ConnectionFailed, match="no route"):
        await RefreshingCredentials(broken, ttl=60, translate=translate).headers()
    with pytest.raises(ConfigurationError, match="no such auth type"):
        await RefreshingCredentials(misconfigured, ttl=60, translate=translate).headers()


async def test_query_values_are_sent_as_text_and_booleans_in_lower_case(server: str) -> None:
    """aiohttp refuses a bool in a query; APIs (Databricks' active_only) spell them in lower case."""
    credentials = RefreshingCredentials(TokenSource("good").build, ttl=60)
    answer = await request_json(get_session(server), "GET", server + "/whoami", credentials=credentials,
                                params={"active_only": True, "expand": False, "limit": 25})
    assert answer == {"active_only": "true", "expand": "false", "limit": "25"}


def test_parse_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("3") == 3.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= (parse_retry_after(date, now=now) or 0) <= 31
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# -- HttpOptions: timeouts, TLS, proxy ------------------------------------------------------------


def test_options_from_connection_extras_in_requests_spelling(tmp_path: Path) -> None:
    bundle = str(tmp_path / "ca.pem")
    opts = HttpOptions.from_extras({"timeout": "12", "verify": bundle, "cert": ["c.pem", "k.pem"],
                                    "proxies": {"https": "http://proxy:3128", "http": "http://other:1"},
                                    "proxy_user": "u", "proxy_password": "s3cret", "unrelated": 1})
    assert (opts.total_timeout, opts.ca_bundle, opts.verify_ssl) == (12.0, bundle, True)
    assert (opts.client_cert, opts.client_key, opts.proxy) == ("c.pem", "k.pem", "http://proxy:3128")
    assert "s3cret" not in repr(opts), "the proxy password stays out of repr"
    assert HttpOptions.from_extras({"verify_ssl": "false"}).verify_ssl is False
    assert HttpOptions.from_extras({}) == HttpOptions()


@pytest.mark.parametrize(("extras", "message"), [
    ({"timeout": "0"}, "timeout must be a number > 0"),
    ({"verify": 3}, "verify must be true or false"),
    ({"proxy": "proxy:3128"}, "proxy must be an http:// or https:// URL"),
    ({"proxy": "http://p:1", "proxy_user": "u"}, "proxy_user needs proxy_password"),
    ({"client_key": "k.pem"}, "client_key needs client_cert"),
    ({"proxies": "http://p:1"}, "proxies must be a mapping"),
])
def test_bad_http_options_fail_with_a_message_naming_them(extras: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        HttpOptions.from_extras(extras)


async def test_the_timeout_of_the_options_bounds_each_request(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(ConnectionFailed):
        await request_json(get_session(server, options=HttpOptions(total_timeout=0.3)), "GET", server + "/slow")
    assert time.monotonic() - started < 4.0


async def test_sessions_are_pooled_per_endpoint_and_options(server: str) -> None:
    slow = HttpOptions(total_timeout=60)
    assert get_session(server, options=slow) is get_session(server, options=HttpOptions(total_timeout=60.0))
    assert get_session(server, options=slow) is not get_session(server)
    assert get_session(server, verify_ssl=False) is get_session(server, options=HttpOptions(verify_ssl=False))


def _pem(obj: x509.Certificate | rsa.RSAPrivateKey) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(name: str, issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None, *,
           server: bool = False) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


@pytest.fixture
async def mtls_server(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 with a certificate of a private CA, requiring client certificates
    of that CA; yields its URL and the folder with ``ca.pem``, ``client.pem`` and ``client.key``."""
    ca_cert, ca_key = _issue("test CA", None)
    ca = (ca_cert.subject, ca_key)
    server_cert, server_key = _issue("127.0.0.1", ca, server=True)
    client_cert, client_key = _issue("airflow", ca)
    for name, obj in [("ca.pem", ca_cert), ("server.pem", server_cert), ("server.key", server_key),
                      ("client.pem", client_cert), ("client.key", client_key)]:
        (tmp_path / name).write_bytes(_pem(obj))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "ca.pem"))
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    app = web.Application()

    async def ok(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        return web.json_response({"client": dict(x[0] for x in peer["subject"])["commonName"] if peer else None})

    app.router.add_get("/ok", ok)
    async with serve_app(app, ssl_context=context) as origin:
        yield origin, tmp_path


async def test_a_ca_bundle_and_a_client_certificate_reach_a_mutual_tls_server(
    mtls_server: tuple[str, Path],
) -> None:
    url, pems = mtls_server
    with pytest.raises(ConnectionFailed):  # the system's CAs do not know the private CA
        await request_json(get_session(url), "GET", url + "/ok")
    trusted = HttpOptions(ca_bundle=str(pems / "ca.pem"), connect_timeout=5)
    with pytest.raises(ConnectionFailed):  # trusted, but the server wants a client certificate
        await request_json(get_session(url, options=trusted), "GET", url + "/ok")
    mutual = HttpOptions.from_extras({"verify": str(pems / "ca.pem"),
                                      "cert": [str(pems / "client.pem"), str(pems / "client.key")]})
    assert await request_json(get_session(url, options=mutual), "GET", url + "/ok") == {"client": "airflow"}


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


@pytest.fixture
async def proxy(server: str) -> AsyncIterator[tuple[str, list[tuple[str, str | None]]]]:
    """A forwarding HTTP proxy that wants Basic credentials; yields its URL and what it forwarded."""
    seen: list[tuple[str, str | None]] = []
    expected = _basic("scott", "tiger")

    async def forward(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Proxy-Authorization")
        seen.append((str(request.url), auth))
        if auth != expected:
            return web.Response(status=407)
        async with aiohttp.ClientSession() as upstream, upstream.get(str(request.url)) as answer:
            return web.Response(body=await answer.read(), status=answer.status, content_type=answer.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    async with serve_app(app) as origin:
        yield origin, seen


async def test_requests_go_through_the_proxy_of_the_options_with_its_credentials(
    server: str, proxy: tuple[str, list[tuple[str, str | None]]],
) -> None:
    proxy_url, seen = proxy
    options = HttpOptions(proxy=proxy_url, proxy_user="scott", proxy_password="tiger")
    assert await request_json(get_session(server, options=options), "GET", server + "/ok") == {"id": 1}
    assert seen == [(server + "/ok", _basic("scott", "tiger"))]
    wrong = HttpOptions(proxy=proxy_url, proxy_user="scott", proxy_password="wrong")
    with pytest.raises(RequestRejected, match="407"):
        await request_json(get_session(server, options=wrong), "GET", server + "/ok")
