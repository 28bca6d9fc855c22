"""Job ids and submission names of the EMR backends.

**Job ids name everything the resume needs.** The core hands one job id from the operator to
the trigger and back through the event, and a resumed task may run in a fresh worker process
where only the event survives (``dag.test()`` drops the defer kwargs too). So the ids are
self-describing:

* steps: ``j-CLUSTER:s-STEP1,s-STEP2`` — the cluster and every step one task added; the task
  succeeds when all of them completed. One step is just the one-element case, which is also
  what the step sensor watches.
* clusters: ``j-CLUSTER``.
* Serverless job runs: ``APPLICATION:JOBRUN``.

**Names carry the deterministic key.** ``AddJobFlowSteps`` has no client token and
``ListJobRuns`` does not return one, so the key travels in the step / job-run name, as a
suffix ``[asa-<family>-<generation> i/n]`` (index and count for steps, so a retry can find
every step of the newest submission, including those that already finished). Only a key of
this release (:func:`airflow_spark_async.core.keys.parse_key`) counts: a name with anything
else in the brackets carries no key, so it is never reattached to, reported or cancelled as
ours.
"""

from __future__ import annotations

import dataclasses
import re
from typing import NamedTuple

from airflow_spark_async.core.backend import parse_key
from airflow_spark_async.core.errors import JobNotFoundError

__all__ = ["JobRunRef", "KeyTag", "StepsRef", "in_family", "parse_tag", "strip_tag", "tag_name"]

#: AWS's limit for step, job-run and cluster names
NAME_LIMIT = 256
#: the suffix ``tag_name`` appends; what is inside the brackets must be a key (see ``parse_tag``)
_TAG = re.compile(r" \[(asa-[0-9a-z-]+?)(?: (\d+)/(\d+))?\]$")


class KeyTag(NamedTuple):
    key: str
    position: int | None
    total: int | None


def tag_name(name: str, key: str, index: int | None = None, total: int | None = None) -> str:
    """``name`` with the key (and the step's place in its submission) appended, within AWS's limit."""
    tag = f" [{key}{f' {index}/{total}' if index is not None else ''}]"
    return (name or "spark-job")[: NAME_LIMIT - len(tag)] + tag


def parse_tag(name: str | None) -> KeyTag | None:
    """The key (and the step's place in its submission) a name carries, or ``None``."""
    match = _TAG.search(name or "")
    if not match or parse_key(match.group(1)) is None:
        return None
    index, total = match.group(2), match.group(3)
    return KeyTag(match.group(1), int(index) if index else None, int(total) if total else None)


def in_family(key: str | None, family: str) -> bool:
    """Whether ``key`` is a key of this release of the task instance ``family`` (any generation)."""
    parsed = parse_key(key or "")
    return parsed is not None and parsed.family == family


def strip_tag(name: str | None) -> str:
    """The name as the user gave it."""
    return _TAG.sub("", name or "")


@dataclasses.dataclass(frozen=True)
class StepsRef:
    """The steps one task added to one cluster."""

    cluster_id: str
    step_ids: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.cluster_id}:{','.join(self.step_ids)}"

    @classmethod
    def parse(cls, job_id: str) -> StepsRef:
        cluster, _, steps = str(job_id).partition(":")
        ids = tuple(s.strip() for s in steps.split(",") if s.strip())
        if not cluster.strip() or not ids:
            raise JobNotFoundError(f"{job_id!r} is not an EMR steps job id (expected 'j-CLUSTER:s-STEP[,s-STEP…]')")
        return cls(cluster.strip(), ids)


@dataclasses.dataclass(frozen=True)
class JobRunRef:
    """One EMR Serverless job run."""

    application_id: str
    job_run_id: str

    def __str__(self) -> str:
        return f"{self.application_id}:{self.job_run_id}"

    @classmethod
    def parse(cls, job_id: str) -> JobRunRef:
        application, _, run = str(job_id).partition(":")
        if not application.strip() or not run.strip():
            raise JobNotFoundError(f"{job_id!r} is not an EMR Serverless job id (expected 'APPLICATION:JOBRUN')")
        return cls(application.strip(), run.strip())
