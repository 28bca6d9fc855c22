"""The deterministic key that makes a retry reattach instead of submitting twice.

The key depends only on (dag, task, run, map index), so every try of one task instance
computes the same key, and no two task instances share one. It is short and made of
``[a-z0-9-]`` so every backend can carry it: a Livy batch name, an EMR client token
(<= 64 chars), a Databricks idempotency token (<= 64 chars), a Spark app name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

__all__ = ["job_key", "job_key_from_context"]

PREFIX = "asa-"


def job_key(dag_id: str, task_id: str, run_id: str, map_index: int | None = -1) -> str:
    raw = "\x1f".join((dag_id, task_id, run_id, str(-1 if map_index is None else map_index)))
    return PREFIX + hashlib.sha256(raw.encode()).hexdigest()[:32]


def job_key_from_context(context: Mapping[str, Any]) -> str:
    ti = context["ti"]
    return job_key(ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1))
