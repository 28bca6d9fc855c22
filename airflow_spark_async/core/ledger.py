"""Where a task instance's job is recorded when the backend cannot look keys up itself.

Some APIs (the Spark standalone master's REST server, EMR's RunJobFlow) cannot find a job by
a tag we gave it at submit time. For them the operator keeps one record per key *family*
(every try of one task instance of one DAG run instance, see :mod:`.keys`) in an Airflow
Variable:

1. **intent** — ``{"key": …, "job_id": null}`` is written *before* submitting. If that write
   fails, nothing is submitted. If the worker dies after the backend accepted the job but
   before step 2, the next try sees the intent and knows an untracked job may exist.
2. **record** — ``{"key": …, "job_id": …}`` right after the backend answered. If that write
   fails, the job just submitted is cancelled before the task fails: nothing untracked runs.
3. **forget** — when the task ends with its job ended (success, failure, cancelled by the
   deadline or by a user's action). A record is *kept* when the job's state could not be
   known, so that the next try — or the clean-up in docs/concepts.md — finds it.

A new try reads the record: the same key (a retry) reattaches to the job if it still runs;
another generation (the task was cleared) cancels it as stale.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Protocol

__all__ = [
    "AirflowVariableLedger",
    "KeyLedger",
    "LedgerEntry",
    "MemoryLedger",
    "default_ledger",
    "read_entry",
    "set_default_ledger",
    "write_entry",
]

VARIABLE_PREFIX = "airflow_spark_async.job."


class KeyLedger(Protocol):
    """A small persistent map ``name -> (backend, value)``; the core stores :class:`LedgerEntry`
    JSON under key families, backends may store their own values (Databricks' tokens)."""

    def remember(self, key: str, backend: str, job_id: str) -> None: ...

    def recall(self, key: str, backend: str) -> str | None: ...

    def forget(self, key: str) -> None: ...


@dataclasses.dataclass(frozen=True)
class LedgerEntry:
    """The job of one key family: ``job_id`` is ``None`` while only the intent is recorded."""

    key: str
    job_id: str | None = None


def write_entry(ledger: KeyLedger, family: str, backend: str, entry: LedgerEntry) -> None:
    ledger.remember(family, backend, json.dumps(dataclasses.asdict(entry)))


def read_entry(ledger: KeyLedger, family: str, backend: str) -> LedgerEntry | None:
    """The family's entry, or ``None``; a value written by an older release (a bare job id) is
    read as a record of an unknown key, so it is never reattached to but still found."""
    raw = ledger.recall(family, backend)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return LedgerEntry(key="", job_id=raw)
    if not isinstance(data, dict) or not isinstance(data.get("key"), str):
        return LedgerEntry(key="", job_id=str(data))
    job_id = data.get("job_id")
    return LedgerEntry(key=data["key"], job_id=None if job_id is None else str(job_id))


class AirflowVariableLedger:
    """The default ledger: one Airflow Variable per live key family."""

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


_default: KeyLedger | None = None


def default_ledger() -> KeyLedger:
    """The ledger operators and triggers use unless given one: Airflow Variables."""
    return _default or AirflowVariableLedger()


def set_default_ledger(ledger: KeyLedger | None) -> None:
    """Replace the default ledger (a simulation or a test); ``None`` restores Variables."""
    global _default
    _default = ledger
