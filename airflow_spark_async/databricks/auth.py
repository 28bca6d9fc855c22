"""Auth headers for a Databricks workspace, produced by databricks-sdk without ever blocking the
event loop (the connection is read in :mod:`~airflow_spark_async.databricks.compat.connection`).

Why databricks-sdk: it owns the token exchanges (OIDC discovery, client credentials, Entra ID
resources and management tokens) and their refresh; ``Config.authenticate()`` hands back
headers, the seam to our aiohttp sessions. But the SDK is synchronous and ``Config()`` does
network I/O in its constructor, so both run in a thread — core's
:class:`~airflow_spark_async.core.http.RefreshingCredentials` does that, caches the headers briefly
and rebuilds the ``Config`` once after a 401. A PAT or basic auth needs no exchange: its constant
header is built here, sparing each task process the SDK's import.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

from airflow_spark_async.core.backend import credential_digest
from airflow_spark_async.core.errors import AuthError, ConfigurationError, ConnectionFailed, ServerError
from airflow_spark_async.core.http import RefreshingCredentials

__all__ = ["DatabricksSettings", "SdkAuth"]

#: how long headers of an OAuth credential are reused before asking the SDK again; the SDK
#: refreshes tokens ahead of expiry, and a 401 inside this window triggers a rebuild anyway
OAUTH_HEADERS_TTL = 60.0
#: timeouts for the SDK's own requests (host metadata, OIDC discovery, token endpoints): its
#: default retry budget is five minutes, far longer than a poll cycle should wait
SDK_HTTP_TIMEOUT = 30
SDK_RETRY_TIMEOUT = 60


@dataclasses.dataclass(frozen=True)
class DatabricksSettings:
    """A ``databricks`` connection, parsed and checked once (``compat.connection``); ``build_config``
    does the I/O.

    :param host: the workspace URL, scheme included, no trailing slash.
    :param auth_type: the databricks-sdk auth type chosen from the connection's fields.
    :param credentials: the SDK ``Config`` arguments of that auth type (secrets: never logged).
    :param azure_ad_endpoint: a non-default Entra ID authority, for sovereign clouds.
    """

    host: str
    auth_type: str
    credentials: Mapping[str, str] = dataclasses.field(repr=False, default_factory=dict)
    azure_ad_endpoint: str | None = None

    @property
    def identity(self) -> str:
        """A digest of the auth method and credentials (never the secrets themselves): what tells
        two connections to one workspace apart, and keys watchers and shared SDK configs."""
        return credential_digest(self.auth_type, self.azure_ad_endpoint, self.credentials)

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


class SdkAuth(RefreshingCredentials):
    """The credentials of one workspace and principal, for core's 401-renew-once request path.

    One instance per workspace and credentials serves every backend of the process (:meth:`of`), so
    the SDK's ``Config`` — and its token — is shared. Headers of OAuth are reused for
    ``OAUTH_HEADERS_TTL``; a PAT's or basic auth's never change (a 401 then rebuilds once, and a
    second one makes the core re-read the connection: how a rotated PAT is picked up).
    """

    @classmethod
    def of(cls, settings: DatabricksSettings) -> SdkAuth:
        """The process's one instance for ``settings``' workspace and credentials."""
        with _SHARED_LOCK:
            return _SHARED.setdefault(f"{settings.host}|{settings.identity}", cls(settings))

    def __init__(self, settings: DatabricksSettings, *, clock: Callable[[], float] | None = None) -> None:
        self.settings = settings
        static = settings.static_auth()
        build = (lambda: settings.build_config().authenticate) if static is None else (lambda: lambda: static)
        super().__init__(build, ttl=OAUTH_HEADERS_TTL if static is None else math.inf, translate=_auth_failure,
                         clock=clock)


_SHARED: dict[str, SdkAuth] = {}
_SHARED_LOCK = threading.Lock()
