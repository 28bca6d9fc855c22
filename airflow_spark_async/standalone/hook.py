"""The ``spark_standalone`` connection: where a standalone master's REST server and UI live.

Host, port and schema name the REST submission server; the password is an optional bearer token
for Spark 4's ``JWSFilter``; the extras are in docs/standalone.md. That server accepts
unauthenticated submissions by default: never expose it beyond a trusted network.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.http import DEFAULT_OPTIONS, HttpOptions
from airflow_spark_async.core.runtime import BackendHook

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_spark_async.core.backend import Backend

__all__ = ["SparkStandaloneHook", "StandaloneSettings"]

CONN_TYPE = "spark_standalone"


@dataclasses.dataclass(frozen=True)
class StandaloneSettings:
    """A ``spark_standalone`` connection, parsed and checked once."""

    rest_url: str
    ui_url: str
    master_url: str
    spark_version: str = "4.0.0"
    token: str | None = dataclasses.field(default=None, repr=False)
    #: how sessions reach the two origins; ``verify_ssl`` is the connection's only HTTP setting
    http: HttpOptions = DEFAULT_OPTIONS

    @classmethod
    def from_connection(cls, conn: Connection) -> StandaloneSettings:
        if not conn.host:
            raise ConfigurationError(f"connection {conn.conn_id!r}: host (the Spark master's address) is required")
        host = conn.host.split("://")[-1].rstrip("/")
        scheme = (conn.schema or "http").lower()
        if scheme not in ("http", "https"):
            raise ConfigurationError(f"connection {conn.conn_id!r}: schema must be http or https, got {scheme!r}")
        extra: dict[str, Any] = conn.extra_dejson or {}
        unknown = sorted(set(extra) - {"ui_url", "master_url", "verify_ssl", "spark_version"})
        if unknown:
            raise ConfigurationError(f"connection {conn.conn_id!r}: unknown extra field(s) {unknown}")
        return cls(
            rest_url=f"{scheme}://{host}:{conn.port or 6066}",
            ui_url=str(extra.get("ui_url") or f"http://{host}:8080").rstrip("/"),
            master_url=str(extra.get("master_url") or f"spark://{host}:7077"),
            spark_version=str(extra.get("spark_version") or "4.0.0"),
            token=conn.password or None,
            # true/false/yes/off …, anything else refused; unset (or left empty in the form) verifies
            http=HttpOptions(verify_ssl=True if extra.get("verify_ssl") in (None, "") else extra["verify_ssl"]),
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


class SparkStandaloneHook(BackendHook):
    """Registers the ``spark_standalone`` connection type; the work is done by the backend.

    Its form fields are declared in ``get_provider_info()`` (``conn-fields``), as Airflow 3.2+ prefers.
    """

    conn_name_attr = "conn_id"
    default_conn_name = "spark_standalone_default"
    conn_type = CONN_TYPE
    hook_name = "Spark Standalone (REST submission)"

    def settings(self) -> StandaloneSettings:
        return StandaloneSettings.from_connection(self.get_connection(self.conn_id))

    @classmethod
    def backend_class(cls) -> type[Backend]:
        from airflow_spark_async.standalone.backend import StandaloneBackend  # it imports this module

        return StandaloneBackend  # its probe asks the master's UI and its REST server
