"""The official provider's ``databricks`` connection, read with the same meaning, so one connection
serves both packages:

* **Host** (or extra ``host``) — the workspace URL; ``https://`` is assumed without a scheme.
* **Password** without login, or extra ``token`` — a personal access token (PAT).
* **Login + Password** with extra ``service_principal_oauth: true`` — OAuth machine-to-machine:
  the service principal's client id and secret.
* **Login + Password** with extra ``azure_tenant_id`` — an Azure (Entra ID) service principal;
  optional extras ``azure_resource_id`` (workspace resource id, for a principal that is not a
  workspace user) and ``azure_ad_endpoint`` (the Entra ID authority, default the public cloud).
* **Login + Password** otherwise — basic auth (workspace user name and password).

The official extras that select auth methods this package does not offer are refused, with the
ones it does offer named.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.spec import parse_bool
from airflow_spark_async.databricks.auth import DatabricksSettings

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["UNSUPPORTED_EXTRAS", "settings_from_connection"]

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


def settings_from_connection(conn: Connection) -> DatabricksSettings:
    """The workspace and credentials of an official ``databricks`` connection, checked."""
    extra: dict[str, Any] = conn.extra_dejson or {}
    host = _workspace_url(conn, extra)
    login, password = conn.login or "", conn.password or ""
    where = f"connection {conn.conn_id!r}"
    if extra.get("token"):
        return DatabricksSettings(host, "pat", {"token": str(extra["token"])})
    if password and not login:
        return DatabricksSettings(host, "pat", {"token": password})
    if extra.get("azure_tenant_id"):
        if not (login and password):
            raise ConfigurationError(f"{where}: an Azure service principal needs its client id as login "
                                     "and its secret as password")
        creds = {"azure_client_id": login, "azure_client_secret": password,
                 "azure_tenant_id": str(extra["azure_tenant_id"])}
        if extra.get("azure_resource_id"):
            creds["azure_workspace_resource_id"] = str(extra["azure_resource_id"])
        ad = str(extra.get("azure_ad_endpoint") or "").strip()
        authority = (ad.rstrip("/") + "/") if ad else None
        return DatabricksSettings(host, "azure-client-secret", creds, azure_ad_endpoint=authority)
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
        return DatabricksSettings(host, "oauth-m2m", {"client_id": login, "client_secret": password})
    if login and password:
        return DatabricksSettings(host, "basic", {"username": login, "password": password})
    raise ConfigurationError(
        f"{where}: no credentials. Put a personal access token in the password field (login empty), or "
        "see docs/databricks.md for OAuth M2M and Azure service principals"
    )
