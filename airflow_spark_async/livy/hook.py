"""The ``livy`` connection type: the official provider's, read as its hook reads it (docs/livy.md),
in the worker *and* the triggerer. The work is the backend's; this module registers the form."""

from __future__ import annotations

from airflow.sdk import BaseHook

from airflow_spark_async.livy.backend import LivyOptions, LivySettings
from airflow_spark_async.livy.compat import DEFAULT_CONN_ID, auth_type_name, resolve_conn_id

__all__ = ["CONN_TYPE", "DEFAULT_CONN_ID", "LivyHook", "LivyOptions", "LivySettings", "auth_type_name",
           "resolve_conn_id"]

CONN_TYPE = "livy"


class LivyHook(BaseHook):
    """Registers the ``livy`` connection type and its form. When both providers are installed Airflow
    keeps one form for the type; both read the same fields."""

    conn_name_attr = "livy_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Apache Livy (async)"

    def __init__(self, livy_conn_id: str = DEFAULT_CONN_ID) -> None:
        super().__init__()
        self.livy_conn_id = livy_conn_id
