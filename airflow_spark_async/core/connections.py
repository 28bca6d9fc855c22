"""Reading Airflow connections, with the one error message a missing connection deserves.

The worker reads synchronously before it submits; the triggerer reads asynchronously so
the event loop never blocks. Both turn Airflow's "not found" into a ``ConfigurationError``
that names the connection id and how to define it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException, AirflowRuntimeError

from airflow_spark_async.core.errors import ConfigurationError

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["aload_connection", "load_connection"]

_NOT_FOUND = (AirflowNotFoundException, AirflowRuntimeError, LookupError)


def _missing(conn_id: str, exc: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"Airflow connection {conn_id!r} is not defined ({exc}). Create it in the UI, with "
        f"`airflow connections add {conn_id} ...`, or as the environment variable "
        f"AIRFLOW_CONN_{conn_id.upper()}."
    )


def load_connection(conn_id: str) -> Connection:
    try:
        return BaseHook.get_connection(conn_id)
    except _NOT_FOUND as exc:
        raise _missing(conn_id, exc) from exc


async def aload_connection(conn_id: str) -> Connection:
    try:
        return await BaseHook.aget_connection(conn_id)
    except _NOT_FOUND as exc:
        raise _missing(conn_id, exc) from exc
