"""Building a dataclass from a user's mapping, refusing field names it does not have.

Specs, poll policies and backend options all come from DAG code or JSON; a misspelt key
(``executor_mem``) must fail at parse time with the list of known names, not be ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from airflow_spark_async.core.errors import ConfigurationError

__all__ = ["Alias", "from_known_fields"]

T = TypeVar("T")


def from_known_fields(cls: type[T], data: Mapping[str, Any] | None, what: str) -> T:
    """``cls(**data)``, after rejecting keys that are not fields of ``cls`` (``what`` names it)."""
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigurationError(f"{what}: unknown field(s) {unknown}; known: {sorted(known)}")
    return cls(**data)


class Alias:
    """A second name for an attribute: the official provider's argument name for the core's one
    (``databricks_conn_id`` for ``conn_id``), readable, writable and templatable under both."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj, self.target)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj, self.target, value)
