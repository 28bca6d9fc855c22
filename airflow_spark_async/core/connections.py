"""Reading Airflow connections, with the one error message a missing connection deserves.

The worker reads synchronously before it submits; the triggerer reads asynchronously so
the event loop never blocks. Only a connection that really does not exist becomes a
``ConfigurationError`` naming the connection id and how to define it: any other failure of
Airflow's runtime (an API-server blip, a timeout) is a :class:`ConnectionFailed` — transient —
so that one restart of the API server does not fail every deferred task at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException, AirflowRuntimeError

from airflow_spark_async.core.errors import ConfigurationError, ConnectionFailed

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["aload_connection", "load_connection"]


def _translate(conn_id: str, exc: Exception) -> Exception:
    error = getattr(getattr(exc, "error", None), "error", None)
    if isinstance(exc, AirflowRuntimeError) and getattr(error, "value", None) != "CONNECTION_NOT_FOUND":
        return ConnectionFailed(f"could not read Airflow connection {conn_id!r}: {exc}")
    return ConfigurationError(
        f"Airflow connection {conn_id!r} is not defined ({exc}). Create it in the UI, with "
        f"`airflow connections add {conn_id} ...`, or as the environment variable "
        f"AIRFLOW_CONN_{conn_id.upper()}."
    )


def load_connection(conn_id: str) -> Connection:
    try:
        return BaseHook.get_connection(conn_id)
    except (AirflowNotFoundException, AirflowRuntimeError, LookupError) as exc:
        raise _translate(conn_id, exc) from exc


async def aload_connection(conn_id: str) -> Connection:
    try:
        return await BaseHook.aget_connection(conn_id)
    except (AirflowNotFoundException, AirflowRuntimeError, LookupError) as exc:
        raise _translate(conn_id, exc) from exc
