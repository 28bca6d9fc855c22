"""The official ``databricks`` connection type's form, registered only when the official provider
is absent (see ``provider_info``); import-light, like every ``provider_info`` module."""

from __future__ import annotations

from typing import Any

from airflow_spark_async import distribution_installed

__all__ = ["CONNECTION_TYPES"]

CONNECTION_TYPES: list[dict[str, Any]] = (
    []
    if distribution_installed("apache-airflow-providers-databricks")
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
