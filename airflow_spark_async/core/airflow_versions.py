"""What differs between the Airflow minors the package supports (3.0 to 3.3), in one place.

Why one module: the rest of the package imports Airflow's names from here when they moved
between minors, and asks :data:`TRIGGER_ON_KILL` instead of comparing version strings, so
dropping an old minor later is one edit here and a search for the names it exports.

* ``BaseHook`` and the SDK's ``AirflowException``, ``AirflowNotFoundException`` and
  ``TaskDeferred`` (what ``defer()`` raises) reached ``airflow.sdk`` in 3.1; 3.0 has them in
  ``airflow.hooks.base`` and ``airflow.exceptions``.
* ``BaseHook.aget_connection`` (a connection read that does not block the triggerer's loop)
  came in 3.1; on 3.0 the synchronous read runs in a thread, as 3.0's triggerer asks of
  Task SDK calls made from a trigger — and so does the parsing of the connection's extra (see
  :func:`aget_connection`).
* ``BaseTrigger.on_kill`` came in 3.3: before it, a trigger learns that its task was acted on
  only from the ``CancelledError`` its ``run`` receives (see ``core.trigger``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import attrs
from airflow.sdk.definitions.connection import Connection as SdkConnection
from airflow.triggers.base import BaseTrigger

try:  # Airflow 3.1+
    from airflow.sdk import BaseHook
except ImportError:  # Airflow 3.0
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef]
try:
    from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException, TaskDeferred
except ImportError:
    from airflow.exceptions import AirflowException, AirflowNotFoundException, TaskDeferred  # type: ignore[no-redef]

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = [
    "TRIGGER_ON_KILL",
    "AirflowException",
    "AirflowNotFoundException",
    "BaseHook",
    "TaskDeferred",
    "aget_connection",
]

#: whether the triggerer calls ``BaseTrigger.on_kill`` after a user acted on a deferred task
TRIGGER_ON_KILL: bool = hasattr(BaseTrigger, "on_kill")


async def aget_connection(conn_id: str) -> Connection:
    """Read an Airflow connection without blocking the event loop, on every supported minor."""
    if hasattr(BaseHook, "aget_connection"):
        return await BaseHook.aget_connection(conn_id)
    from asgiref.sync import sync_to_async

    return await sync_to_async(_read_connection)(conn_id)


def _read_connection(conn_id: str) -> Connection:
    """Airflow 3.0: read the connection and parse its extra, in the calling (worker) thread.

    On 3.0 every ``extra_dejson`` read masks the extra's secrets through a blocking call to the
    triggerer's supervisor, and that call raises on the event loop's thread ("You cannot use
    AsyncToSync in the same thread as an async event loop"): any trigger whose connection has an
    extra failed. So the extra is parsed (and masked) here, once, and the connection returned
    hands out copies of that parse.
    """
    conn = BaseHook.get_connection(conn_id)
    fields = {field.name: getattr(conn, field.name) for field in attrs.fields(SdkConnection)}
    return _ParsedConnection(**fields, parsed_extra=conn.extra_dejson)


@attrs.define
class _ParsedConnection(SdkConnection):
    """A connection whose extra was parsed when it was read (see :func:`_read_connection`)."""

    parsed_extra: dict[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def extra_dejson(self) -> dict[str, Any]:
        return copy.deepcopy(self.parsed_extra)
