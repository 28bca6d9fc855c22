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
#: the official provider's connection type, which ``SparkSubmitOperator`` reads; it stays the official
#: provider's to register (docs/connections), this package only reads it
SPARK_CONN_TYPE = "spark"
OWN_EXTRAS = ("ui_url", "master_url", "verify_ssl", "spark_version")
MASTER_RPC_PORT = 7077
REST_HINT = (
    "The REST submission server listens on port 6066 (spark.master.rest.port) and is off unless the master runs "
    "with spark.master.rest.enabled=true (set it in the master's spark-defaults.conf or SPARK_MASTER_OPTS="
    "-Dspark.master.rest.enabled=true, then restart the master)"
)


def spark_master_url(conn: Connection) -> str:
    """The master URL of a ``spark`` connection, as the official ``SparkSubmitHook`` builds it: a host
    that holds a URL (``spark://m:7077``, ``k8s://https://…``, ``local[*]``) or has no port is taken as
    it is, else ``<conn_type>://<host>``; then ``:<port>`` if there is one."""
    host = conn.host or ""
    master = host if "://" in host or not conn.port else f"{conn.conn_type}://{host}"
    return f"{master}:{conn.port}" if conn.port else master


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
        if conn.conn_type == SPARK_CONN_TYPE:
            return cls.from_spark_connection(conn)
        if not conn.host:
            raise ConfigurationError(f"connection {conn.conn_id!r}: host (the Spark master's address) is required")
        host = conn.host.split("://")[-1].rstrip("/")
        scheme = (conn.schema or "http").lower()
        if scheme not in ("http", "https"):
            raise ConfigurationError(f"connection {conn.conn_id!r}: schema must be http or https, got {scheme!r}")
        extra: dict[str, Any] = conn.extra_dejson or {}
        unknown = sorted(set(extra) - set(OWN_EXTRAS))
        if unknown:
            raise ConfigurationError(f"connection {conn.conn_id!r}: unknown extra field(s) {unknown}")
        if conn.port == MASTER_RPC_PORT:
            raise ConfigurationError(
                f"connection {conn.conn_id!r}: port {MASTER_RPC_PORT} is the Spark master's RPC port, which takes no "
                f"REST submissions. {REST_HINT}"
            )
        return cls(
            rest_url=f"{scheme}://{host}:{conn.port or 6066}",
            ui_url=str(extra.get("ui_url") or f"http://{host}:8080").rstrip("/"),
            master_url=str(extra.get("master_url") or f"spark://{host}:7077"),
            spark_version=str(extra.get("spark_version") or "4.0.0"),
            token=conn.password or None,
            # true/false/yes/off …, anything else refused; unset (or left empty in the form) verifies
            http=HttpOptions(verify_ssl=True if extra.get("verify_ssl") in (None, "") else extra["verify_ssl"]),
        )

    @classmethod
    def from_spark_connection(cls, conn: Connection) -> StandaloneSettings:
        """The official provider's ``spark`` connection (the one ``SparkSubmitOperator`` reads), read as
        its hook reads it: the master from host and port (``spark://host:7077``), the REST server from
        the ``rest-scheme`` and ``rest-port`` extras (default ``http`` and 6066). Only a single
        ``spark://`` master can take REST submissions; anything else is refused with what to use."""
        master = spark_master_url(conn)
        where = f"connection {conn.conn_id!r} (type spark, master {master!r})"
        if not master.startswith("spark://"):
            raise ConfigurationError(
                f"{where}: only a Spark standalone master (spark://host:port) takes REST submissions, so only it "
                "can be watched without a spark-submit process; for local, YARN or Kubernetes masters keep "
                "the official SparkSubmitOperator (airflow.providers.apache.spark)"
            )
        hostports = master.removeprefix("spark://").rstrip("/")
        if "," in hostports:
            raise ConfigurationError(
                f"{where}: masters with standby masters (spark://m1:7077,m2:7077) are not supported yet; name the "
                "active master, or keep the official SparkSubmitOperator"
            )
        host, _, port = hostports.partition(":")
        extra: dict[str, Any] = conn.extra_dejson or {}
        scheme = str(extra.get("rest-scheme") or "http").lower()
        if scheme not in ("http", "https"):
            raise ConfigurationError(f"{where}: extra rest-scheme must be http or https, got {scheme!r}")
        try:
            rest_port = int(extra.get("rest-port") or 6066)
        except (TypeError, ValueError):
            raise ConfigurationError(f"{where}: extra rest-port must be a port number, got "
                                     f"{extra.get('rest-port')!r}") from None
        if rest_port == MASTER_RPC_PORT:
            raise ConfigurationError(f"{where}: extra rest-port is {MASTER_RPC_PORT}, the master's RPC port. "
                                     f"{REST_HINT}")
        return cls(
            rest_url=f"{scheme}://{host}:{rest_port}",
            ui_url=str(extra.get("ui_url") or f"http://{host}:8080").rstrip("/"),
            master_url=f"spark://{host}:{port or MASTER_RPC_PORT}",
            spark_version=str(extra.get("spark_version") or "4.0.0"),
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
