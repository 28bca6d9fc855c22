"""Where the job id of a key is remembered when the backend cannot look keys up itself.

Some APIs (the Spark standalone master) cannot find a job by a tag we gave it. For them
the operator records ``key -> job id`` in an Airflow Variable right after submitting and
deletes it when the task finishes. A retry — a new try, whose XComs Airflow has already
cleared — reads it back and reattaches to the job if it still runs.

The window between the backend accepting a job and the Variable being written is the one
place where a crash can still lead to a second submission; it is milliseconds wide.
"""

from __future__ import annotations

import json
from typing import Protocol

__all__ = ["AirflowVariableLedger", "KeyLedger", "MemoryLedger"]

VARIABLE_PREFIX = "airflow_spark_async.job."


class KeyLedger(Protocol):
    def remember(self, key: str, backend: str, job_id: str) -> None: ...

    def recall(self, key: str, backend: str) -> str | None: ...

    def forget(self, key: str) -> None: ...


class AirflowVariableLedger:
    """The default ledger: one Airflow Variable per live key."""

    def remember(self, key: str, backend: str, job_id: str) -> None:
        from airflow.sdk import Variable

        Variable.set(
            VARIABLE_PREFIX + key,
            json.dumps({"backend": backend, "job_id": job_id}),
            description="airflow-spark-async: the Spark job of a running task, for reattach on retry",
        )

    def recall(self, key: str, backend: str) -> str | None:
        from airflow.sdk import Variable

        raw = Variable.get(VARIABLE_PREFIX + key, default=None)
        if not raw:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data.get("job_id") if data.get("backend") == backend else None

    def forget(self, key: str) -> None:
        from airflow.sdk import Variable

        try:
            Variable.delete(VARIABLE_PREFIX + key)
        except Exception:  # already gone: nothing to forget
            pass


class MemoryLedger:
    """A ledger in a dict, for tests and for running operators outside Airflow."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, str]] = {}

    def remember(self, key: str, backend: str, job_id: str) -> None:
        self.entries[key] = (backend, job_id)

    def recall(self, key: str, backend: str) -> str | None:
        entry = self.entries.get(key)
        return entry[1] if entry and entry[0] == backend else None

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)
