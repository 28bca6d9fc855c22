"""The ``spark_standalone`` connection: where a standalone master's REST server and UI live.

Fields:

* **Host / Port / Schema** — the master's REST submission server (``6066``, ``http``).
* **Password** — optional bearer token (a JWS) for masters protected by Spark 4's
  ``JWSFilter``; sent as ``Authorization: Bearer …`` and never logged.
* **Extra** — ``ui_url`` (the master web UI, default ``http://<host>:8080``), ``master_url``
  (default ``spark://<host>:7077``), ``verify_ssl`` (default true), ``spark_version`` (the
  ``clientSparkVersion`` sent with submissions, default ``4.0.0``).

The REST submission server accepts unauthenticated submissions by default: never expose it
beyond a trusted network (see docs/standalone.md).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_spark_async.core.errors import ConfigurationError

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["SparkStandaloneHook", "StandaloneSettings"]

CONN_TYPE = "spark_standalone"


@dataclasses.dataclass(frozen=True)
class StandaloneSettings:
    """A ``spark_standalone`` connection, parsed and checked once."""

    rest_url: str
    ui_url: str
    master_url: str
    verify_ssl: bool = True
    spark_version: str = "4.0.0"
    token: str | None = dataclasses.field(default=None, repr=False)

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
            verify_ssl=str(extra.get("verify_ssl", True)).lower() not in ("false", "0", "no"),
            spark_version=str(extra.get("spark_version") or "4.0.0"),
            token=conn.password or None,
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


class SparkStandaloneHook(BaseHook):
    """Registers the ``spark_standalone`` connection type; the work is done by the backend.

    Its form fields are declared in ``get_provider_info()`` (``conn-fields``), as Airflow 3.2+ prefers.
    """

    conn_name_attr = "conn_id"
    default_conn_name = "spark_standalone_default"
    conn_type = CONN_TYPE
    hook_name = "Spark Standalone (REST submission)"

    def __init__(self, conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.conn_id = conn_id

    def settings(self) -> StandaloneSettings:
        return StandaloneSettings.from_connection(self.get_connection(self.conn_id))
