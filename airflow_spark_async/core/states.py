"""The five states every backend maps its own life cycle onto.

Backends speak many dialects (Livy's ``dead``, Databricks' ``TERMINATED``/``FAILED``,
Spark's ``RELAUNCHING``); the core only ever reasons about these. A state a backend
does not recognise maps to :attr:`JobState.PENDING` with the raw value kept for the log,
so a new server-side state never crashes a poll loop.

``CANCELLING`` is not an end — the job may still run for a while — but it is never a job to
reattach to: someone (a user's clear, a kill, the deadline) already decided it must stop. A
new try cancels it if need be and submits its own.
"""

from __future__ import annotations

import enum

__all__ = ["TERMINAL_STATES", "JobState"]


class JobState(str, enum.Enum):
    """Backend-neutral state of one Spark job."""

    PENDING = "pending"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: frozenset[JobState] = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
