"""The ``livy`` connection, read as the official provider reads it — in the worker *and* the triggerer.

Fields (the same as apache-airflow-providers-apache-livy, so existing connections keep working):

* **Host** — ``livy.example.com``, or a whole URL such as
  ``https://knox.example.com:8443/gateway/default/livy/v1`` (its path becomes the endpoint prefix).
* **Port**, **Schema** (``http`` or ``https``, default ``http``) — no port means the scheme's default,
  as in the official hook.
* **Login / Password** — HTTP Basic (Livy's LDAP authentication, Knox). A password *without* a login is
  sent as a bearer token (``Authorization: Bearer …``); ``auth_type`` in Extra makes either explicit.
* **Extra** — as in the official provider, every key that is not one of the options below is sent as an
  HTTP header. Options: ``endpoint_prefix``, ``auth_type`` (``basic``/``bearer``/``none``), ``verify``
  (or ``verify_ssl``), ``timeout`` (seconds per request), ``ui_url`` (where Livy's web UI is, for links).
  Accepted without effect, as they only tune ``requests``: ``stream``, ``check_response``,
  ``allow_redirects``, ``max_redirects``. Refused with a message, because the shared aiohttp pool cannot
  honour them: ``cert``, ``proxies``/``proxy``, ``trust_env``, ``srv_lookup``.

Why the official trigger is not enough: it rebuilds its hook from ``livy_conn_id``, ``extra_options`` and
``extra_headers`` only, so a non-default auth type and the endpoint prefix (Knox) are lost in the
triggerer. Here the backend options carry both, and the credentials are read from the connection in the
triggerer, never from the trigger's kwargs.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from yarl import URL

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.fields import from_known_fields

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = [
    "CONN_TYPE",
    "DEFAULT_CONN_ID",
    "LivyHook",
    "LivyOptions",
    "LivySettings",
    "auth_type_name",
    "resolve_conn_id",
]

CONN_TYPE = "livy"
DEFAULT_CONN_ID = "livy_default"
AUTH_TYPES = ("basic", "bearer", "none")

#: Extra keys that are options, not headers; the official hook treats the same ``requests`` keys so.
_EXTRA_OPTIONS = {"endpoint_prefix", "auth_type", "verify", "verify_ssl", "timeout", "ui_url"}
_IGNORED_OPTIONS = {"stream", "check_response", "allow_redirects", "max_redirects"}
_REFUSED_OPTIONS = {
    "cert": "client certificates",
    "proxies": "HTTP proxies",
    "proxy": "HTTP proxies",
    "trust_env": "proxy settings from the environment",
    "srv_lookup": "DNS SRV look-ups",
}
#: Header names that carry credentials: they belong in the connection, not in a trigger's kwargs,
#: which Airflow stores in its database in clear.
_SENSITIVE_HEADER = re.compile(r"auth|token|secret|passw|cookie|api[-_]?key|credential|session", re.IGNORECASE)
#: Livy refuses POST/DELETE without this header when CSRF protection is on; harmless when it is off.
CSRF_HEADER = "X-Requested-By"


def _truthy(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigurationError(
        f"{what} must be true or false, got {value!r}. A CA bundle path is not supported here: point "
        "SSL_CERT_FILE at it in the environment of the workers and triggerers instead."
    )


def _timeout(value: Any, what: str) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"{what} must be a number of seconds > 0, got {value!r}")
    return seconds


def _prefix(value: Any) -> str:
    """``/gateway/default/livy/v1`` from any spelling (``gateway/default/livy/v1/``…), or ``""``."""
    text = str(value or "").strip().strip("/")
    return f"/{text}" if text else ""


def resolve_conn_id(conn_id: str | None, livy_conn_id: str | None, what: str) -> str:
    """The connection of a Livy operator or sensor: ``conn_id`` and the official ``livy_conn_id`` are
    one setting, so they must not disagree; with neither, ``livy_default``."""
    if conn_id and livy_conn_id and conn_id != livy_conn_id:
        raise ConfigurationError(f"{what}: conn_id={conn_id!r} and livy_conn_id={livy_conn_id!r} differ")
    return conn_id or livy_conn_id or DEFAULT_CONN_ID


def auth_type_name(value: Any) -> str | None:
    """The auth type of the official ``livy_conn_auth_type`` argument, as a JSON-safe name.

    The official operator takes a ``requests`` auth *class* and calls it with login and password;
    a class cannot travel to the triggerer, so it is mapped to a name here, at parse time.
    """
    if value is None:
        return None
    if isinstance(value, str):
        name = value.strip().lower()
        if name in AUTH_TYPES:
            return name
    else:
        cls = value if isinstance(value, type) else type(value)
        if cls.__name__ in ("HTTPBasicAuth", "BasicAuth"):
            return "basic"
    raise ConfigurationError(
        f"livy_conn_auth_type={value!r} is not supported: use requests' HTTPBasicAuth (the default), or one of "
        f"{list(AUTH_TYPES)} ('bearer' sends the connection's password as a bearer token). Kerberos/SPNEGO "
        "and Digest need per-request handshakes that the triggerer's shared aiohttp pool does not do; put a "
        "gateway such as Knox in front of Livy, or keep the official operator for that connection."
    )


def _header_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{what} must be a mapping of header names to values, got {type(value).__name__}")
    return {str(k): str(v) for k, v in value.items()}


@dataclasses.dataclass(frozen=True)
class LivyOptions:
    """The backend options of a Livy operator, sensor or trigger: JSON-safe and free of secrets.

    :param endpoint_prefix: path in front of ``/batches`` (a gateway such as Knox); overrides the
        connection's ``endpoint_prefix``.
    :param auth_type: ``basic``, ``bearer`` or ``none``; overrides the connection's choice.
    :param extra_headers: headers sent with every request, over the connection's own. Credentials are
        refused here (they would be stored in clear with the trigger): put them in the connection.
    :param extra_options: the official ``extra_options`` (``requests`` options): ``timeout`` and
        ``verify``/``verify_ssl`` are honoured, the rest as described in the module docstring.
    :param page_size: sessions per ``GET /batches`` page and lines per ``GET /batches/{id}/log`` page.
    """

    endpoint_prefix: str | None = None
    auth_type: str | None = None
    extra_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    extra_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    page_size: int = 100

    def __post_init__(self) -> None:
        if self.auth_type is not None and self.auth_type not in AUTH_TYPES:
            raise ConfigurationError(f"Livy auth_type must be one of {list(AUTH_TYPES)}, got {self.auth_type!r}")
        headers = _header_map(self.extra_headers, "extra_headers")
        secret = sorted(name for name in headers if _SENSITIVE_HEADER.search(name))
        if secret:
            raise ConfigurationError(
                f"extra_headers {secret} look like credentials. The trigger's arguments are stored in Airflow's "
                "database in clear, so credentials must come from the Livy connection: login/password, a bearer "
                "token as the password, or the header as a key of the connection's Extra."
            )
        object.__setattr__(self, "extra_headers", headers)
        if not isinstance(self.extra_options, Mapping):
            raise ConfigurationError(f"extra_options must be a mapping, got {type(self.extra_options).__name__}")
        object.__setattr__(self, "extra_options", dict(self.extra_options))
        _check_requests_options(self.extra_options, "extra_options", allow_headers=False)
        if isinstance(self.page_size, bool) or not isinstance(self.page_size, int) or not 1 <= self.page_size <= 10000:
            raise ConfigurationError(f"Livy page_size must be an integer from 1 to 10000, got {self.page_size!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> LivyOptions:
        return from_known_fields(cls, data, "Livy backend options")

    @classmethod
    def merge_official(
        cls,
        backend_options: Mapping[str, Any] | None,
        *,
        endpoint_prefix: str | None = None,
        auth_type: Any = None,
        extra_options: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Backend options from the official provider's arguments, over explicit ``backend_options``,
        validated now (at DAG parse time) and returned in their JSON-safe form."""
        merged = dict(backend_options or {})
        official = {
            "endpoint_prefix": endpoint_prefix,
            "auth_type": auth_type_name(auth_type),
            "extra_options": dict(extra_options) if extra_options else None,
            "extra_headers": dict(extra_headers) if extra_headers else None,
        }
        merged.update({key: value for key, value in official.items() if value is not None})
        return cls.from_dict(merged).to_dict()

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe form carried by triggers; only options that differ from the defaults."""
        default = LivyOptions()
        return {
            f.name: value
            for f in dataclasses.fields(self)
            if (value := getattr(self, f.name)) != getattr(default, f.name)
        }


def _check_requests_options(options: Mapping[str, Any], what: str, *, allow_headers: bool) -> None:
    """Refuse ``requests`` options that cannot be honoured, and (for ``extra_options``) unknown keys."""
    for key in options:
        if key in _REFUSED_OPTIONS:
            raise ConfigurationError(
                f"{what}: {key!r} ({_REFUSED_OPTIONS[key]}) is not supported by the Livy backend's shared aiohttp "
                "sessions; reach Livy directly or through a gateway, and see docs/livy.md"
            )
        if not allow_headers and key not in {"timeout", "verify", "verify_ssl"} | _IGNORED_OPTIONS:
            raise ConfigurationError(
                f"{what}: unknown option {key!r}; supported: timeout, verify, verify_ssl (and, without effect, "
                f"{sorted(_IGNORED_OPTIONS)})"
            )


@dataclasses.dataclass(frozen=True)
class LivySettings:
    """A ``livy`` connection plus the backend options, parsed and checked once.

    ``headers`` hold the credentials; they are never part of ``repr`` and never logged.
    """

    origin: str
    prefix: str
    ui_url: str
    verify_ssl: bool = True
    timeout: float | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def base_url(self) -> str:
        """Where ``/batches`` lives: scheme, host, port and endpoint prefix."""
        return self.origin + self.prefix

    @property
    def watch_key(self) -> str:
        """The endpoint: scheme, host, port and prefix."""
        return self.base_url

    @property
    def identity(self) -> str:
        """Endpoint *and* who is asking: triggers of one Livy server share a watcher only when they
        send the same headers (credentials, tenant headers), because different principals may see
        different batches. The headers enter as the first 12 hex digits of a SHA-256 digest, never
        as the secret itself."""
        digest = hashlib.sha256(repr(sorted(self.headers.items())).encode()).hexdigest()[:12]
        return f"{self.base_url}|{digest}"

    @classmethod
    def from_connection(cls, conn: Connection, options: LivyOptions) -> LivySettings:
        if not conn.host:
            raise ConfigurationError(f"connection {conn.conn_id!r}: host (the Livy server's address) is required")
        extra: dict[str, Any] = dict(conn.extra_dejson or {})
        _check_requests_options(extra, f"connection {conn.conn_id!r} extra", allow_headers=True)
        host = conn.host.strip()
        url = URL(host if "://" in host else f"{(conn.schema or 'http').strip().lower()}://{host}")
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(
                f"connection {conn.conn_id!r}: schema must be http or https and host a host name, got "
                f"{url.scheme!r} and {conn.host!r}"
            )
        port = conn.port or url.explicit_port
        origin = f"{url.scheme}://{url.raw_host}" + (f":{port}" if port else "")
        # The host's own path, then the prefix (operator argument over connection extra), as one path.
        prefix = _prefix(url.raw_path) + _prefix(
            options.endpoint_prefix if options.endpoint_prefix is not None else extra.get("endpoint_prefix")
        )
        verify = extra.get("verify", extra.get("verify_ssl", True))
        verify = options.extra_options.get("verify", options.extra_options.get("verify_ssl", verify))
        timeout = options.extra_options.get("timeout", extra.get("timeout"))
        headers: dict[str, str] = {"Accept": "application/json", CSRF_HEADER: "airflow-spark-async"}
        headers.update({k: str(v) for k, v in extra.items() if k not in _EXTRA_OPTIONS | _IGNORED_OPTIONS})
        headers.update(options.extra_headers)
        headers.update(_auth_headers(conn, options.auth_type or extra.get("auth_type")))
        return cls(
            origin=origin,
            prefix=prefix,
            ui_url=str(extra.get("ui_url") or origin + prefix).rstrip("/"),
            verify_ssl=_truthy(verify, f"connection {conn.conn_id!r}: verify"),
            timeout=_timeout(timeout, f"connection {conn.conn_id!r}: timeout"),
            headers=headers,
        )


def _auth_headers(conn: Connection, auth_type: Any) -> dict[str, str]:
    kind = str(auth_type).strip().lower() if auth_type else ("basic" if conn.login else "bearer")
    if kind not in AUTH_TYPES:
        raise ConfigurationError(f"connection {conn.conn_id!r}: auth_type must be one of {list(AUTH_TYPES)}")
    if kind == "basic" and conn.login:
        token = base64.b64encode(f"{conn.login}:{conn.password or ''}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}
    if kind == "bearer" and conn.password:
        return {"Authorization": f"Bearer {conn.password}"}
    if kind != "none" and auth_type:
        raise ConfigurationError(
            f"connection {conn.conn_id!r}: auth_type {kind!r} needs "
            + ("a login" if kind == "basic" else "a token in the password field")
        )
    return {}


class LivyHook(BaseHook):
    """Registers the ``livy`` connection type and its form; the work is done by the backend.

    The connection type is the official provider's, so an existing ``livy_default`` works unchanged.
    When both providers are installed Airflow keeps one form for the type; both read the same fields.
    """

    conn_name_attr = "livy_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Apache Livy (async)"

    def __init__(self, livy_conn_id: str = DEFAULT_CONN_ID, options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.livy_conn_id = livy_conn_id
        self.options = LivyOptions.from_dict(options)

    def settings(self) -> LivySettings:
        return LivySettings.from_connection(self.get_connection(self.livy_conn_id), self.options)
