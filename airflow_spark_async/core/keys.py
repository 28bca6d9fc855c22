"""The deterministic key that makes a retry reattach instead of submitting twice.

A key has two parts, ``asa-<family>-<generation>``:

* the **family** hashes the deployment salt, the DAG, task, run id, map index *and the DAG
  run instance* (the run's start date). Every try of one task instance of one DAG run shares
  it; a DAG run deleted and re-created with the same run id gets a new one, and so does the
  same DAG in another deployment that sets another salt — so neither can ever reattach to,
  or be handed back by an idempotency token, a job that belongs to someone else;
* the **generation** is the first try number of the task instance's current clear cycle
  (Airflow's own ``max_tries - retries + 1``). Retries keep it, so a retry reattaches to the
  job of an earlier try that still runs; a clear changes it, so the new try never reattaches
  to the old job — it cancels it as stale and submits a new one. Clear means restart.

Keys are short and made of ``[a-z0-9-]`` so every backend can carry one: a Livy batch name,
an EMR client token or step name (<= 64 chars), a Databricks idempotency token (<= 64 chars),
a Spark app name, a cluster tag.

The salt is ``[airflow_spark_async] deployment_salt`` (environment variable
``AIRFLOW__AIRFLOW_SPARK_ASYNC__DEPLOYMENT_SALT``): give every deployment that shares a Livy
server, an EMR cluster or a Databricks workspace a different one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["JobKey", "deployment_salt", "find_key", "job_key", "job_key_from_context", "key_family", "parse_key"]

PREFIX = "asa-"
_KEY = re.compile(r"^(asa-[0-9a-f]{24})-(\d+)$")
_KEY_IN_TEXT = re.compile(r"asa-[0-9a-f]{24}-\d+")


@dataclasses.dataclass(frozen=True)
class JobKey:
    """A parsed key: its family (shared by every try of one task instance) and generation."""

    family: str
    generation: int

    def __str__(self) -> str:
        return f"{self.family}-{self.generation}"


def parse_key(key: str) -> JobKey | None:
    """The parts of a key of this release, or ``None`` for anything else (an older key, a name)."""
    match = _KEY.match(key)
    return JobKey(match.group(1), int(match.group(2))) if match else None


def key_family(key: str) -> str:
    """The family part of a key (a key of an older release is its own family)."""
    parsed = parse_key(key)
    return parsed.family if parsed else key


def find_key(text: str | None) -> str | None:
    """The key carried in a job name or tag (``etl-asa-…-1``, ``etl [asa-…-1]``, ``etl-asa-…-1-2``
    where ``-2`` is a backend's resubmission suffix), or ``None``."""
    match = _KEY_IN_TEXT.search(text or "")
    return match.group(0) if match else None


def deployment_salt() -> str:
    """The configured per-deployment salt ('' when unset)."""
    try:
        from airflow.configuration import conf

        return conf.get("airflow_spark_async", "deployment_salt", fallback="") or ""
    except Exception:  # outside a configured Airflow (a bare script): no salt
        return ""


def job_key(
    dag_id: str,
    task_id: str,
    run_id: str,
    map_index: int | None = -1,
    *,
    run_instance: str = "",
    generation: int = 1,
    salt: str = "",
) -> str:
    """The key of one clear cycle of one task instance of one DAG run instance."""
    raw = "\x1f".join((salt, dag_id, task_id, run_id, str(-1 if map_index is None else map_index), run_instance))
    return str(JobKey(PREFIX + hashlib.sha256(raw.encode()).hexdigest()[:24], int(generation)))


def _run_instance(dag_run: Any) -> str:
    """What tells this DAG run apart from a deleted one of the same run id: its start date."""
    if dag_run is None:
        return ""
    when = getattr(dag_run, "start_date", None) or getattr(dag_run, "run_after", None)
    return when.isoformat() if hasattr(when, "isoformat") else str(when or "")


def _generation(ti: Any) -> int:
    """The first try number of the task instance's current clear cycle."""
    max_tries = getattr(ti, "max_tries", None)
    task = getattr(ti, "task", None)
    retries = getattr(task, "retries", None)
    if isinstance(max_tries, int) and isinstance(retries, int) and not isinstance(max_tries, bool):
        return max(1, max_tries - retries + 1)
    return 1


def job_key_from_context(context: Mapping[str, Any]) -> str:
    ti = context["ti"]
    return job_key(
        ti.dag_id,
        ti.task_id,
        ti.run_id,
        getattr(ti, "map_index", -1),
        run_instance=_run_instance(context.get("dag_run")),
        generation=_generation(ti),
        salt=deployment_salt(),
    )
