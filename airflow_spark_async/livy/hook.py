"""The ``livy`` connection type: the official provider's, read as its hook reads it (docs/livy.md),
in the worker *and* the triggerer. The work is the backend's; this module registers the form."""

from __future__ import annotations

from airflow_spark_async.core.runtime import BackendHook
from airflow_spark_async.livy.backend import LivyBackend, LivyOptions, LivySettings
from airflow_spark_async.livy.compat import DEFAULT_CONN_ID, auth_type_name, resolve_conn_id

__all__ = ["CONN_TYPE", "DEFAULT_CONN_ID", "LivyHook", "LivyOptions", "LivySettings", "auth_type_name",
           "resolve_conn_id"]

CONN_TYPE = "livy"


class LivyHook(BackendHook):
    """Registers the ``livy`` connection type and its form — only when the official Livy provider,
    which owns the type, is absent (``provider_info``); the operators read the same fields either way."""

    conn_name_attr = "livy_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Apache Livy (async)"

    @classmethod
    def backend_class(cls) -> type[LivyBackend]:
        return LivyBackend  # its probe lists one page of batches
