"""The ``livy`` connection, honoured in the triggerer: auth, headers, endpoint prefix (Knox), TLS,
CSRF, timeouts — and the options that cannot be honoured, refused before anything is submitted."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests.auth
from airflow.sdk import Connection

from airflow_spark_async.core.errors import AuthError, ConfigurationError, ConnectionFailed
from airflow_spark_async.core.runtime import reset_backends
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.livy.backend import LivyBatchRequest
from airflow_spark_async.livy.hook import LivyOptions, LivySettings, auth_type_name
from airflow_spark_async.livy.operators import LivyBatchOperator
from airflow_spark_async.livy.sensors import LivyBatchSensor
from tests.conformance.harness import FakeTI, defer, rebuild, run_trigger
from tests.livy.conftest import CONN, backend, context, run, set_conn
from tests.servers.fault_proxy import Fault, FaultProxy
from tests.servers.livy_server import LivyServer, Step

KNOX_PREFIX = "/gateway/default/livy/v1"


def settings(options: dict | None = None, **fields: object) -> LivySettings:
    conn = Connection(conn_id="c", conn_type="livy", **{"host": "livy.example.com", **fields})  # type: ignore[arg-type]
    return LivySettings.from_connection(conn, LivyOptions.from_options(options))


def submit(key: str = "asa-conn") -> str:
    async def go() -> str:
        request = LivyBatchRequest(SparkJob(application="/a.py", name="n"))
        return (await (await backend()).submit(request, key=key)).job_id

    return run(go)


def test_the_connection_reads_like_the_official_one() -> None:
    plain = settings(port=8998)
    assert plain.base_url == "http://livy.example.com:8998"
    assert settings(schema="https").base_url == "https://livy.example.com"  # no port: the scheme's default
    full = settings(host="https://knox.example.com:8443/gateway/default/livy/v1")
    assert (full.origin, full.prefix) == ("https://knox.example.com:8443", KNOX_PREFIX)
    assert settings(extra='{"endpoint_prefix": "gateway/default/livy/v1/"}').prefix == KNOX_PREFIX
    assert settings({"endpoint_prefix": "/other"}, extra='{"endpoint_prefix": "x"}').prefix == "/other"
    # As in the official hook, extra keys that are not options are headers.
    with_headers = settings(extra='{"X-Tenant": "blue", "verify": false, "timeout": 12, "check_response": false}')
    assert with_headers.headers["X-Tenant"] == "blue" and "verify" not in with_headers.headers
    assert (with_headers.http.verify_ssl, with_headers.http.total_timeout) == (False, 12.0)
    assert "Authorization" not in plain.headers and plain.headers["X-Requested-By"]


def test_credentials_become_headers_and_never_show_in_repr() -> None:
    basic = settings(login="alice", password="s3cret")
    assert basic.headers["Authorization"] == "Basic YWxpY2U6czNjcmV0"
    bearer = settings(password="tok-123")  # a password without a login is a bearer token
    assert bearer.headers["Authorization"] == "Bearer tok-123"
    assert "s3cret" not in repr(basic) and "tok-123" not in repr(bearer) and "tok-123" not in bearer.identity
    assert settings({"auth_type": "none"}, login="a", password="b").headers.get("Authorization") is None
    assert basic.identity != bearer.identity, "different identities must not share a watcher"
    assert basic.watch_key == bearer.watch_key == "http://livy.example.com", "one endpoint"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('{"srv_lookup": true}', "SRV"),
        ('{"trust_env": true}', "environment"),
        ('{"timeout": -1}', "timeout"),
        ('{"auth_type": "kerberos"}', "auth_type"),
    ],
)
def test_what_cannot_be_honoured_is_refused_with_what_to_do(extra: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        settings(extra=extra)


def test_requests_tls_and_proxy_options_are_honoured_as_http_options() -> None:
    """``verify`` as a CA bundle path, ``cert`` and ``proxies`` (the official hook's ``requests``
    options, in the connection or in ``extra_options``) configure the sessions instead of being refused."""
    http = settings(extra='{"verify": "/etc/ca.pem", "cert": ["/c.pem", "/k.pem"], '
                          '"proxies": {"http": "http://p:3128"}, "connect_timeout": 3}').http
    assert (http.ca_bundle, http.client_cert, http.client_key) == ("/etc/ca.pem", "/c.pem", "/k.pem")
    assert (http.proxy, http.connect_timeout) == ("http://p:3128", 3.0)
    assert "proxies" not in settings(extra='{"proxies": {"http": "http://p:3128"}}').headers
    tuned = settings({"extra_options": {"verify": False, "timeout": 7}}, extra='{"verify": "/etc/ca.pem"}').http
    assert (tuned.verify_ssl, tuned.total_timeout) == (False, 7.0), "extra_options win over the connection"


def test_official_auth_types_map_to_names_or_are_refused() -> None:
    assert auth_type_name(None) is None
    assert auth_type_name(requests.auth.HTTPBasicAuth) == "basic"
    assert auth_type_name("Bearer") == "bearer"
    with pytest.raises(ConfigurationError, match="Kerberos"):
        auth_type_name(requests.auth.HTTPDigestAuth)

    class HTTPKerberosAuth(requests.auth.AuthBase):  # what requests_kerberos provides
        pass

    with pytest.raises(ConfigurationError, match="Kerberos/SPNEGO"):
        LivyBatchOperator(task_id="k", file="/a.py", livy_conn_auth_type=HTTPKerberosAuth)


def test_credentials_in_extra_headers_are_refused_because_kwargs_are_stored_in_clear() -> None:
    with pytest.raises(ConfigurationError, match="credentials"):
        LivyBatchOperator(task_id="h", file="/a.py", extra_headers={"Authorization": "Bearer x"})
    with pytest.raises(ConfigurationError, match="unknown option"):
        LivyBatchOperator(task_id="o", file="/a.py", extra_options={"no_such_requests_option": 1})
    op = LivyBatchOperator(task_id="ok", file="/a.py", extra_headers={"X-Trace": "1"}, extra_options={"timeout": 5})
    assert op.backend_options == {"extra_headers": {"X-Trace": "1"}, "extra_options": {"timeout": 5}}


@pytest.mark.parametrize("auth", [("basic", "alice", "s3cret"), ("bearer", "tok-123")], ids=["basic", "bearer"])
def test_authentication_is_sent_by_worker_and_triggerer(monkeypatch: pytest.MonkeyPatch, auth: tuple) -> None:
    with LivyServer(auth=auth) as livy:
        fields = {"login": auth[1], "password": auth[2]} if auth[0] == "basic" else {"password": auth[1]}
        set_conn(monkeypatch, CONN, livy.port, **fields)
        livy.script(Step("running", 1), Step("success"))
        op = LivyBatchOperator(task_id="auth", conn_id=CONN, file="/a.py", polling_interval=0.3, deferrable=True)
        ti = FakeTI()
        [event] = run_trigger(rebuild(defer(op, ti)))
        assert event["status"] == "success"
        assert op.execute_complete(context(ti), event) == int(ti.xcoms["job_id"])
        assert livy.count("GET", r"^/batches/\d+$") >= 2, "the triggerer polled with the credentials"

        set_conn(monkeypatch, CONN, livy.port, login="alice", password="wrong")
        reset_backends()  # a new worker process: it reads the connection again
        with pytest.raises(AuthError, match="401"):
            submit()


def test_the_endpoint_prefix_reaches_the_triggerer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The official trigger drops the operator's endpoint prefix; ours carries it in its kwargs."""
    with LivyServer(prefix=KNOX_PREFIX, csrf=True) as livy:
        set_conn(monkeypatch, CONN, livy.port)
        livy.script(Step("running", 0.5), Step("success"))
        op = LivyBatchOperator(task_id="knox", conn_id=CONN, file="/a.py", polling_interval=0.3,
                               livy_endpoint_prefix="gateway/default/livy/v1", deferrable=True)
        trigger = rebuild(defer(op, FakeTI()))
        assert trigger.serialize()[1]["backend_options"] == {"endpoint_prefix": "gateway/default/livy/v1"}
        [event] = run_trigger(trigger)
        assert event["status"] == "success"
        assert event["links"]["livy_batch"] == f"{livy.url}/ui/batch/0/log"
        # CSRF protection is on: POST went through because X-Requested-By is always sent.
        assert livy.count("POST", rf"^{KNOX_PREFIX}/batches$") == 1

        sensor = LivyBatchSensor(task_id="s", batch_id="0", livy_conn_id=CONN, endpoint_prefix=KNOX_PREFIX,
                                 poke_interval=1)
        assert sensor.poke(context()) is True  # type: ignore[arg-type]


def test_connection_extra_headers_are_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    with LivyServer() as livy:
        set_conn(monkeypatch, CONN, livy.port, extra={"X-Tenant": "blue", "endpoint_prefix": ""})
        submit()
        sent = livy.request_headers[-1]
        assert sent["X-Tenant"] == "blue" and sent["Accept"] == "application/json"
        assert "endpoint_prefix" not in sent


def test_a_slow_livy_is_a_transient_timeout_when_asked(proxied_livy: tuple[LivyServer, FaultProxy],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _livy, proxy = proxied_livy
    set_conn(monkeypatch, CONN, proxy.port, extra={"timeout": 0.3})
    proxy.inject(Fault("slow", count=1, delay=2))
    with pytest.raises(ConnectionFailed, match=r"TimeoutError"):
        submit()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A self-signed certificate for 127.0.0.1."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    yield folder / "cert.pem", folder / "key.pem"


def test_tls_is_verified_unless_the_connection_says_not_to(monkeypatch: pytest.MonkeyPatch,
                                                           tls_files: tuple[Path, Path]) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    with LivyServer(ssl_context=context) as livy:
        set_conn(monkeypatch, CONN, livy.port, schema="https")
        with pytest.raises(ConnectionFailed, match=r"(?i)certificate"):
            submit()
        assert livy.count("POST", "/batches") == 0
        set_conn(monkeypatch, CONN, livy.port, schema="https", extra={"verify": False})
        assert submit() == "0"
        set_conn(monkeypatch, CONN, livy.port, schema="https", extra={"verify": str(tls_files[0])})  # a CA bundle
        assert submit("asa-conn-ca") == "1"


def test_the_test_button_lists_batches_with_the_connections_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """``LivyHook.test_connection`` (Airflow's Test button): right credentials pass, wrong ones say why."""
    from airflow_spark_async.livy.hook import LivyHook

    with LivyServer(auth=("basic", "etl", "s3cret")) as server:
        set_conn(monkeypatch, CONN, server.port, login="etl", password="s3cret")
        assert LivyHook(livy_conn_id=CONN).test_connection() == (
            True, f"Livy at http://127.0.0.1:{server.port} answered: 0 batch(es)")
        set_conn(monkeypatch, CONN, server.port, login="etl", password="wrong")
        ok, message = LivyHook(livy_conn_id=CONN).test_connection()
        assert not ok and "AuthError" in message and "401" in message
    ok, message = LivyHook(livy_conn_id=CONN).test_connection()  # the server is gone
    assert not ok and "ConnectionFailed" in message
