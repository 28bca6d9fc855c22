"""The ``databricks`` connection, read the way the official provider reads it, and auth headers
produced by databricks-sdk without ever blocking the event loop.

Fields (the official provider's meaning, so one connection serves both packages):

* **Host** (or extra ``host``) — the workspace URL; ``https://`` is assumed without a scheme.
* **Password** without login, or extra ``token`` — a personal access token (PAT).
* **Login + Password** with extra ``service_principal_oauth: true`` — OAuth machine-to-machine:
  the service principal's client id and secret.
* **Login + Password** with extra ``azure_tenant_id`` — an Azure (Entra ID) service principal;
  optional extras ``azure_resource_id`` (workspace resource id, for a principal that is not a
  workspace user) and ``azure_ad_endpoint`` (the Entra ID authority, default the public cloud).
* **Login + Password** otherwise — basic auth (workspace user name and password).

Why databricks-sdk: it owns the token exchanges (OIDC discovery, client credentials, Entra ID
resources and management tokens) and their refresh; ``Config.authenticate()`` hands back
headers, the seam to our aiohttp sessions. But the SDK is synchronous and ``Config()`` does
network I/O in its constructor, so both run in a thread (``asyncio.to_thread``); one ``Config``
per workspace and credentials serves the whole process, headers are cached briefly, and a 401
rebuilds the ``Config`` once (single-flight) before giving up. A PAT or basic auth needs no
exchange: its constant header is built here, sparing each task process the SDK's import.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from airflow.sdk import BaseHook

from airflow_spark_async.core.errors import AuthError, ConfigurationError, ConnectionFailed, ServerError
from airflow_spark_async.core.options import parse_bool

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["DatabricksAsyncHook", "DatabricksSettings", "SdkAuth"]

_T = TypeVar("_T")

CONN_TYPE = "databricks"
DEFAULT_CONN_ID = "databricks_default"

#: extras of the official connection that select auth methods this package does not offer; using
#: one must fail loudly rather than silently authenticate some other way
UNSUPPORTED_EXTRAS = {
    "use_azure_managed_identity": "Azure managed identity",
    "use_default_azure_credential": "Azure DefaultAzureCredential",
    "azure_managed_identity_client_id": "Azure managed identity",
    "federated_k8s": "Kubernetes OIDC token federation",
    "federated_aws": "AWS IAM OIDC token federation",
    "federated_token_provider": "OIDC token federation",
    "proxies": "HTTP proxies",
}
#: how long headers of an OAuth credential are reused before asking the SDK again; the SDK
#: refreshes tokens ahead of expiry, and a 401 inside this window triggers a rebuild anyway
OAUTH_HEADERS_TTL = 60.0
#: timeouts for the SDK's own requests (host metadata, OIDC discovery, token endpoints): its
#: default retry budget is five minutes, far longer than a poll cycle should wait
SDK_HTTP_TIMEOUT = 30
SDK_RETRY_TIMEOUT = 60
#: salts credential digests (:attr:`DatabricksSettings.identity`); per process, never persisted
_IDENTITY_SALT = os.urandom(16)


def _workspace_url(conn: Connection, extra: Mapping[str, Any]) -> str:
    raw = str(extra.get("host") or conn.host or "").strip().rstrip("/")
    if not raw:
        raise ConfigurationError(
            f"connection {conn.conn_id!r}: host is required — the workspace URL, such as "
            "https://adb-1234567890123456.7.azuredatabricks.net"
        )
    if "://" not in raw:
        raw = f"https://{raw}"
    scheme, _, rest = raw.partition("://")
    if scheme.lower() not in ("http", "https"):
        raise ConfigurationError(f"connection {conn.conn_id!r}: host must be an http(s) URL, got {raw!r}")
    netloc = rest.split("/", 1)[0]
    if conn.port and ":" not in netloc:
        netloc = f"{netloc}:{conn.port}"
    return f"{scheme.lower()}://{netloc}"


@dataclasses.dataclass(frozen=True)
class DatabricksSettings:
    """A ``databricks`` connection, parsed and checked once; ``build_config`` does the I/O.

    :param host: the workspace URL, scheme included, no trailing slash.
    :param auth_type: the databricks-sdk auth type chosen from the connection's fields.
    :param credentials: the SDK ``Config`` arguments of that auth type (secrets: never logged).
    :param azure_ad_endpoint: a non-default Entra ID authority, for sovereign clouds.
    """

    host: str
    auth_type: str
    credentials: Mapping[str, str] = dataclasses.field(repr=False, default_factory=dict)
    azure_ad_endpoint: str | None = None

    @classmethod
    def from_connection(cls, conn: Connection) -> DatabricksSettings:
        extra: dict[str, Any] = conn.extra_dejson or {}
        host = _workspace_url(conn, extra)
        login, password = conn.login or "", conn.password or ""
        where = f"connection {conn.conn_id!r}"
        if extra.get("token"):
            return cls(host, "pat", {"token": str(extra["token"])})
        if password and not login:
            return cls(host, "pat", {"token": password})
        if extra.get("azure_tenant_id"):
            if not (login and password):
                raise ConfigurationError(f"{where}: an Azure service principal needs its client id as login "
                                         "and its secret as password")
            creds = {"azure_client_id": login, "azure_client_secret": password,
                     "azure_tenant_id": str(extra["azure_tenant_id"])}
            if extra.get("azure_resource_id"):
                creds["azure_workspace_resource_id"] = str(extra["azure_resource_id"])
            ad = str(extra.get("azure_ad_endpoint") or "").strip()
            return cls(host, "azure-client-secret", creds, azure_ad_endpoint=(ad.rstrip("/") + "/") if ad else None)
        unsupported = sorted(k for k in UNSUPPORTED_EXTRAS if extra.get(k))
        if unsupported:
            methods = sorted({UNSUPPORTED_EXTRAS[k] for k in unsupported})
            raise ConfigurationError(
                f"{where}: {', '.join(methods)} ({', '.join(unsupported)}) is not supported by airflow-spark-async; "
                "use a personal access token, OAuth M2M (service_principal_oauth) or an Azure service principal "
                "(azure_tenant_id) — see docs/databricks.md"
            )
        if parse_bool(extra.get("service_principal_oauth") or False, f"{where}: extra service_principal_oauth"):
            if not (login and password):
                raise ConfigurationError(f"{where}: OAuth M2M needs the service principal's client id as login "
                                         "and its OAuth secret as password")
            return cls(host, "oauth-m2m", {"client_id": login, "client_secret": password})
        if login and password:
            return cls(host, "basic", {"username": login, "password": password})
        raise ConfigurationError(
            f"{where}: no credentials. Put a personal access token in the password field (login empty), or "
            "see docs/databricks.md for OAuth M2M and Azure service principals"
        )

    @property
    def identity(self) -> str:
        """A digest of the auth method and credentials (never the secrets themselves): what tells
        two connections to one workspace apart, and keys watchers and shared SDK configs.

        sha256 over a random salt made once per process: identities are only compared inside one
        process, and the salt makes a logged identity useless for guessing a weak secret (a basic
        auth password) offline."""
        raw = json.dumps([self.auth_type, self.azure_ad_endpoint, dict(self.credentials)], sort_keys=True)
        return hashlib.sha256(_IDENTITY_SALT + raw.encode()).hexdigest()[:32]

    def static_auth(self) -> dict[str, str] | None:
        """The headers of a PAT or basic auth — exactly what databricks-sdk's ``pat_auth`` and
        ``basic_auth`` return (a test holds them equal) — built without importing the SDK, whose
        import costs every task process 2 to 7 s of worker slot time for a constant header."""
        if self.auth_type == "pat":
            return {"Authorization": f"Bearer {self.credentials['token']}"}
        if self.auth_type == "basic":
            pair = f"{self.credentials['username']}:{self.credentials['password']}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
        return None

    def build_config(self) -> Any:
        """A databricks-sdk ``Config`` for this workspace. Blocking: it may fetch host metadata
        and OIDC endpoints, so call it through ``asyncio.to_thread`` from async code."""
        try:
            from databricks.sdk.core import Config
        except ImportError as exc:  # the [databricks] extra is not installed
            raise ConfigurationError(
                "the Databricks backend needs databricks-sdk: pip install 'airflow-spark-async[databricks]'"
            ) from exc
        from airflow_spark_async import __version__

        kwargs: dict[str, Any] = dict(self.credentials)
        if self.auth_type == "oauth-m2m":
            # The workspace's own OIDC discovery document. Without it the SDK derives the URL from
            # the host-metadata probe, and fails outright when that best-effort probe fails.
            kwargs["discovery_url"] = f"{self.host}/oidc/.well-known/oauth-authorization-server"
        if self.azure_ad_endpoint:
            kwargs["databricks_environment"] = _azure_environment(self.azure_ad_endpoint)
        return Config(
            host=self.host,
            auth_type=self.auth_type,
            http_timeout_seconds=SDK_HTTP_TIMEOUT,
            retry_timeout_seconds=SDK_RETRY_TIMEOUT,
            product="airflow-spark-async",
            product_version=__version__,
            **kwargs,
        )


def _azure_environment(active_directory_endpoint: str) -> Any:
    """An Azure environment like the public one but with another Entra ID authority."""
    from databricks.sdk.environments import (
        ARM_DATABRICKS_RESOURCE_ID,
        ENVIRONMENTS,
        AzureEnvironment,
        Cloud,
        DatabricksEnvironment,
    )

    public = ENVIRONMENTS["PUBLIC"]
    return DatabricksEnvironment(
        cloud=Cloud.AZURE,
        dns_zone=".azuredatabricks.net",
        azure_application_id=ARM_DATABRICKS_RESOURCE_ID,
        azure_environment=AzureEnvironment(
            name="CUSTOM",
            service_management_endpoint=public.service_management_endpoint,
            resource_manager_endpoint=public.resource_manager_endpoint,
            active_directory_endpoint=active_directory_endpoint,
        ),
    )


#: OAuth 2.0 error codes (RFC 6749 §5.2) and Entra ID's AADSTS codes: the token endpoint understood
#: the request and refused the credentials
_REFUSALS = ("invalid_client", "unauthorized_client", "invalid_grant", "invalid_scope", "access_denied",
             "invalid_request", "AADSTS")


def _auth_failure(exc: Exception) -> Exception:
    """The SDK's exceptions, translated. The SDK reports a token endpoint's answer as a bare
    ``ValueError`` without its status, so the words decide: an OAuth refusal is ``AuthError``
    (permanent); a network error, a 429, a 5xx page or a garbled answer is transient."""
    import requests

    text = str(exc)[:500]
    if isinstance(exc, (requests.RequestException, OSError)):
        return ConnectionFailed(f"databricks-sdk could not reach the auth endpoint: {text}")
    if any(code in text for code in _REFUSALS):
        return AuthError(f"databricks-sdk could not authenticate: {text}")
    return ServerError(f"databricks-sdk could not get a token ({type(exc).__name__}: {text}); retrying")


class SdkAuth:
    """Auth headers for one workspace and set of credentials, from databricks-sdk, off the event loop.

    The SDK is synchronous — ``Config()`` probes host metadata and OIDC discovery, ``authenticate()``
    may fetch a token — so both run in a thread, and one ``Config`` per workspace and credentials
    serves every backend of the process (:meth:`of`). Headers are reused for ``OAUTH_HEADERS_TTL``
    (for ever for a PAT or basic auth); after a 401 the caller asks :meth:`refresh`, which rebuilds
    the ``Config`` once however many concurrent polls saw the 401: ``generation`` counts rebuilds.
    """

    _shared: ClassVar[dict[str, SdkAuth]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def of(cls, settings: DatabricksSettings) -> SdkAuth:
        """The process's one instance for ``settings``' workspace and credentials."""
        with cls._shared_lock:
            return cls._shared.setdefault(f"{settings.host}|{settings.identity}", cls(settings))

    def __init__(self, settings: DatabricksSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.generation = 0
        self._config: Any = None
        self._lock = threading.Lock()
        self._clock = clock
        #: (headers, generation, fresh until): replaced whole, so threads never see half of it
        self._cached: tuple[dict[str, str], int, float] | None = None

    async def headers(self) -> tuple[dict[str, str], int]:
        """The headers and the generation of the credentials they come from (for :meth:`refresh`)."""
        cached = self._cached
        if cached is None or self._clock() >= cached[2]:
            headers, generation = await _in_thread(self._authenticate)
            ttl = float("inf") if self.settings.static_auth() is not None else OAUTH_HEADERS_TTL
            self._cached = cached = (headers, generation, self._clock() + ttl)
        return cached[0], cached[1]

    async def refresh(self, stale_generation: int) -> None:
        """New credentials, unless another caller already replaced those of ``stale_generation``."""
        await _in_thread(self._rebuild, stale_generation)

    def _authenticate(self) -> tuple[dict[str, str], int]:
        static = self.settings.static_auth()
        if static is not None:
            return static, self.generation
        with self._lock:
            if self._config is None:
                self._config = self.settings.build_config()
            config, generation = self._config, self.generation
        return dict(config.authenticate()), generation

    def _rebuild(self, stale_generation: int) -> None:
        with self._lock:
            if self.generation == stale_generation:
                self._config = None if self.settings.static_auth() is not None else self.settings.build_config()
                self.generation += 1
                self._cached = None


async def _in_thread(func: Callable[..., _T], *args: Any) -> _T:
    try:
        return await asyncio.to_thread(func, *args)
    except (asyncio.CancelledError, ConfigurationError):
        raise
    except Exception as exc:
        raise _auth_failure(exc) from exc


class DatabricksAsyncHook(BaseHook):
    """Names the ``databricks`` connection type for this package; the backend does the work.

    When the official Databricks provider is installed it owns the connection form and this
    package does not register the type a second time (see ``provider_info``).
    """

    conn_name_attr = "databricks_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Databricks"

    def __init__(self, databricks_conn_id: str = DEFAULT_CONN_ID) -> None:
        super().__init__()
        self.databricks_conn_id = databricks_conn_id

    def settings(self) -> DatabricksSettings:
        return DatabricksSettings.from_connection(self.get_connection(self.databricks_conn_id))
