"""The official ``databricks`` connection type's form, registered only when the official provider
is absent (see ``provider_info``); import-light, like every ``provider_info`` module."""

from __future__ import annotations

import importlib.metadata
from typing import Any

__all__ = ["CONNECTION_TYPES"]


def _official_provider_installed() -> bool:
    # Package metadata, not an import: importing airflow.providers.* would import Airflow, whose
    # configuration is what is loading this module (a circular import).
    try:
        importlib.metadata.distribution("apache-airflow-providers-databricks")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


CONNECTION_TYPES: list[dict[str, Any]] = (
    []
    if _official_provider_installed()
    else [
        {
            "hook-class-name": "airflow_spark_async.databricks.hook.DatabricksAsyncHook",
            "hook-name": "Databricks",
            "connection-type": "databricks",
            "ui-field-behaviour": {
                "hidden-fields": ["schema", "port"],
                "relabeling": {
                    "host": "Workspace URL",
                    "login": "Client id (OAuth M2M, Azure SP) or user name",
                    "password": "Personal access token, or client secret",
                },
                "placeholders": {
                    "host": "https://adb-1234567890123456.7.azuredatabricks.net",
                    "extra": '{"service_principal_oauth": true}  or  {"azure_tenant_id": "..."}',
                },
            },
        }
    ]
)
