"""The ``databricks`` connection type, named for Airflow's provider registry; the backend does the work."""

from __future__ import annotations

from airflow_spark_async.core.runtime import BackendHook
from airflow_spark_async.databricks.auth import DatabricksSettings, SdkAuth
from airflow_spark_async.databricks.backend import DatabricksBackend
from airflow_spark_async.databricks.compat.connection import settings_from_connection

__all__ = ["DatabricksAsyncHook", "DatabricksSettings", "SdkAuth"]

CONN_TYPE = "databricks"
DEFAULT_CONN_ID = "databricks_default"


class DatabricksAsyncHook(BackendHook):
    """Names the ``databricks`` connection type for this package; the backend does the work.

    When the official Databricks provider is installed it owns the connection form and this
    package does not register the type a second time (see ``provider_info``).
    """

    conn_name_attr = "databricks_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Databricks"

    @classmethod
    def backend_class(cls) -> type[DatabricksBackend]:
        return DatabricksBackend  # its probe lists one run

    def settings(self) -> DatabricksSettings:
        return settings_from_connection(self.get_connection(self.databricks_conn_id))
