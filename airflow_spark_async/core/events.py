"""The terminal event a trigger yields: small, versioned, JSON-safe, self-sufficient.

Why self-sufficient: ``dag.test()`` and some resume paths drop the kwargs given to
``defer``, so ``execute_complete`` must be able to act (log, cancel, re-defer, fail) from
the event alone. Why versioned: events are stored in the metadata database; a worker on
a newer release must still read an event written by an older triggerer.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

__all__ = ["EVENT_VERSION", "EventStatus", "JobEvent", "Reason"]

#: 2 added key, reason, started_at, try_number and recheck; version-1 events still load
EVENT_VERSION = 2


class Reason(str, enum.Enum):
    """Why an ``error`` event was sent: the worker's re-check acts on it."""

    NOT_FOUND = "not_found"  # the backend does not know the job (any more)
    AUTH = "auth"  # the credentials were refused, even after reloading the connection
    FOREIGN = "foreign"  # the job id now names a job of another key (a server reused ids)
    REJECTED = "rejected"  # the backend refused a request we built
    CONFIG = "config"  # the connection is missing or wrong
    INTERNAL = "internal"  # anything else: a bug; the trigger still ends with an event


class EventStatus(str, enum.Enum):
    """Why the trigger stopped watching."""

    SUCCESS = "success"  # the job finished successfully
    FAILED = "failed"  # the job failed or was cancelled by someone else
    TIMEOUT = "timeout"  # the deadline passed while the job ran; the resume cancels it
    UNREACHABLE = "unreachable"  # the error budget ran out; the worker re-checks the job
    ERROR = "error"  # a permanent API error (auth refused, job unknown)

    @classmethod
    def for_final_state(cls, succeeded: bool) -> EventStatus:
        return cls.SUCCESS if succeeded else cls.FAILED


@dataclasses.dataclass(frozen=True)
class JobEvent:
    """What ``execute_complete`` receives, as a dataclass; ``to_payload`` is the wire form."""

    status: EventStatus
    backend: str
    job_id: str
    state: str | None = None
    backend_state: str | None = None
    message: str | None = None
    diagnostics: str | None = None
    links: Mapping[str, str] = dataclasses.field(default_factory=dict)
    deadline: float | None = None
    elapsed: float | None = None
    key: str | None = None
    reason: str | None = None
    started_at: float | None = None
    try_number: int | None = None
    recheck: int = 0

    def to_payload(self) -> dict[str, Any]:
        payload = dataclasses.asdict(self)
        payload["status"] = self.status.value
        payload["links"] = dict(self.links)
        payload["v"] = EVENT_VERSION
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> JobEvent:
        """Parse an event of any version; unknown fields from newer releases are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in payload.items() if k in known}
        try:
            data["status"] = EventStatus(payload.get("status"))
        except ValueError:
            data["status"] = EventStatus.ERROR
            data["message"] = f"unrecognised trigger event {dict(payload)!r}"
        data.setdefault("backend", "unknown")
        data.setdefault("job_id", "unknown")
        if not isinstance(data.get("recheck"), int) or isinstance(data.get("recheck"), bool):
            data["recheck"] = 0
        return cls(**data)
