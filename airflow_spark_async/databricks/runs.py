"""Jobs API run objects, parsed once at the edge into small typed values, and their states mapped.

Databricks describes a run twice: the classic ``state`` (``life_cycle_state`` + ``result_state``,
deprecated but still populated) and the newer ``status`` (``state`` + ``termination_details``).
The classic vocabulary is what users of the official provider know and what sensors match on,
so it is the one we speak: ``state`` is read when present; a run that only carries ``status``
is translated into it. ``status`` still contributes what ``state`` lacks — the termination code
and message, and why a run is queued.

Never raising on the unknown: a life cycle state we do not know maps to ``PENDING`` (keep
waiting, the raw value goes to the log); an unknown result on a finished run is a failure,
because nothing says it succeeded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_spark_async.core.errors import ServerError
from airflow_spark_async.core.states import JobState

__all__ = ["RESULT_STATES", "Run", "RunState", "TaskRun", "clean_text", "merge_pages", "trim"]

#: life cycle states after which a run never changes again
TERMINAL_LIFE_CYCLES = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})
_WAITING = frozenset({"PENDING", "QUEUED", "BLOCKED", "WAITING_FOR_RETRY"})
#: TERMINATING alone is not an end, nor a cancel: a run that finished its work passes through it
#: too (cleaning up); only with ``user_cancelled_or_timedout`` is it a cancel in progress
_ACTIVE = frozenset({"RUNNING", "TERMINATING"})

#: result_state of a TERMINATED run → ours
RESULT_STATES: dict[str, JobState] = {
    "SUCCESS": JobState.SUCCEEDED,
    # Databricks' own word for a run whose leaf tasks succeeded although others failed (run_if
    # conditions let it continue): a success, logged with the failed tasks named.
    "SUCCESS_WITH_FAILURES": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "TIMEDOUT": JobState.FAILED,
    "MAXIMUM_CONCURRENT_RUNS_REACHED": JobState.FAILED,
    "UPSTREAM_FAILED": JobState.FAILED,
    "EXCLUDED": JobState.FAILED,
    "DISABLED": JobState.FAILED,
    "CANCELED": JobState.CANCELLED,
    "UPSTREAM_CANCELED": JobState.CANCELLED,
}
EXPLAIN = {
    "TIMEDOUT": "the run reached its timeout_seconds",
    "MAXIMUM_CONCURRENT_RUNS_REACHED": "the job already had max_concurrent_runs active runs, so this run never started",
    "UPSTREAM_FAILED": "a task it depends on failed",
    "UPSTREAM_CANCELED": "a task it depends on was cancelled",
    "EXCLUDED": "its run_if condition was not met, so it did not run",
    "DISABLED": "the task or job is disabled",
    "CANCELED": "the run was cancelled",
    "SKIPPED": "the run was skipped (a run of the same job was still active, or the job is paused)",
    "INTERNAL_ERROR": "Databricks reported an internal error (platform, cluster or storage failure)",
    "SUCCESS_WITH_FAILURES": "the run's leaf tasks succeeded although some tasks failed",
}
#: status.state (v2) → classic life_cycle_state
_V2_LIFE_CYCLES = {"WAITING": "WAITING_FOR_RETRY"}
#: status.termination_details.code of a TERMINATED run → classic (life_cycle_state, result_state)
_V2_TERMINATIONS: dict[str, tuple[str, str | None]] = {
    "SUCCESS": ("TERMINATED", "SUCCESS"),
    "SUCCESS_WITH_FAILURES": ("TERMINATED", "SUCCESS_WITH_FAILURES"),
    "USER_CANCELED": ("TERMINATED", "CANCELED"),
    "CANCELED": ("TERMINATED", "CANCELED"),
    "SKIPPED": ("SKIPPED", None),
    "DISABLED": ("TERMINATED", "DISABLED"),
    "INTERNAL_ERROR": ("INTERNAL_ERROR", None),
    "MAX_CONCURRENT_RUNS_EXCEEDED": ("TERMINATED", "MAXIMUM_CONCURRENT_RUNS_REACHED"),
}
def trim(text: str | None, limit: int) -> str:
    """The start and the end of a long text (a JVM trace's cause is at its end)."""
    text = (text or "").strip()
    if len(text) <= limit:
        return text
    head = limit // 3
    return f"{text[:head]}\n… [{len(text) - limit} characters trimmed] …\n{text[-(limit - head):]}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def clean_text(value: Any) -> str:
    """A field as stripped text; absent or empty values become ``""``."""
    return str(value).strip() if value not in (None, "") else ""


@dataclasses.dataclass(frozen=True)
class RunState:
    """The state of a run or a task run, in the classic vocabulary.

    :param life_cycle: ``life_cycle_state`` (``PENDING`` … ``TERMINATED``), raw if unknown.
    :param result: ``result_state`` once finished (``SUCCESS``, ``FAILED`` …), else ``None``.
    :param message: ``state_message``, else the termination message of ``status``.
    :param code: ``status.termination_details.code`` (``DRIVER_ERROR`` …) when reported.
    :param queue_reason: why the run waits in the queue, when it does.
    :param cancelled: ``state.user_cancelled_or_timedout``: a user (or the scheduler, at the run's
        timeout) cancelled it — with ``TERMINATING``, the cancel is in progress.
    """

    life_cycle: str
    result: str | None = None
    message: str = ""
    code: str | None = None
    queue_reason: str = ""
    cancelled: bool = False

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> RunState:
        state, status = _mapping(obj.get("state")), _mapping(obj.get("status"))
        details = _mapping(status.get("termination_details"))
        code = clean_text(details.get("code")).upper() or None
        message = clean_text(state.get("state_message")) or clean_text(details.get("message"))
        queue_details = _mapping(status.get("queue_details"))
        queue = clean_text(state.get("queue_reason")) or clean_text(queue_details.get("message"))
        life = clean_text(state.get("life_cycle_state")).upper()
        cancelled = state.get("user_cancelled_or_timedout") is True
        if life:
            return cls(life, clean_text(state.get("result_state")).upper() or None, message, code, queue, cancelled)
        v2 = clean_text(status.get("state")).upper()
        if not v2:
            return cls("UNKNOWN", None, message, code, queue)
        if v2 != "TERMINATED":
            return cls(_V2_LIFE_CYCLES.get(v2, v2), None, message, code, queue)
        life, result = _V2_TERMINATIONS.get(code or "", ("TERMINATED", "FAILED"))
        return cls(life, result, message, code, queue)

    @property
    def is_terminal(self) -> bool:
        return self.life_cycle in TERMINAL_LIFE_CYCLES

    @property
    def job_state(self) -> JobState:
        if self.life_cycle in _WAITING:
            return JobState.PENDING
        if self.life_cycle == "TERMINATING" and self.cancelled:
            return JobState.CANCELLING  # being cancelled (or timed out): ending, never reattached to
        if self.life_cycle in _ACTIVE:
            return JobState.RUNNING
        if self.life_cycle == "TERMINATED":
            return RESULT_STATES.get(self.result or "", JobState.FAILED)
        if self.is_terminal:  # SKIPPED, INTERNAL_ERROR
            return JobState.FAILED
        return JobState.PENDING  # unknown: keep waiting

    @property
    def label(self) -> str:
        """What users match on and read in logs: the result once there is one, else the life cycle."""
        return self.result or self.life_cycle

    def explain(self) -> str:
        """One line: why the run is where it is, from Databricks' words and ours."""
        parts = [EXPLAIN.get(self.label, "")]
        if self.life_cycle == "TERMINATED" and self.result and self.result not in RESULT_STATES:
            parts.append(f"unrecognised result state {self.result}")
        if self.code and self.code not in ("SUCCESS", self.result):
            parts.append(f"[{self.code}]")
        parts.append(self.message)
        return " ".join(p for p in parts if p).strip()


@dataclasses.dataclass(frozen=True)
class TaskRun:
    """One attempt of one task of a run — or the run itself, for a run without tasks (``task_key``
    empty): what failed, and whose output to show, is then the run's."""

    task_key: str
    run_id: str
    attempt: int
    state: RunState
    is_notebook: bool = False

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> TaskRun:
        return cls(
            task_key=clean_text(obj.get("task_key")) or "?",
            run_id=clean_text(obj.get("run_id")),
            attempt=int(obj.get("attempt_number") or 0),
            state=RunState.parse(obj),
            is_notebook="notebook_task" in obj,
        )

    @property
    def title(self) -> str:
        """How logs and failures name it: ``task 'ingest'``, or ``the run``."""
        return f"task {self.task_key!r}" if self.task_key else "the run"


@dataclasses.dataclass(frozen=True)
class Run:
    """A run as ``runs/get`` or ``runs/list`` describes it."""

    run_id: str
    state: RunState
    run_page_url: str = ""
    tasks: tuple[TaskRun, ...] = ()

    @classmethod
    def parse(cls, obj: Any) -> Run:
        if not isinstance(obj, Mapping) or obj.get("run_id") is None:
            raise ServerError(f"expected a run object with a run_id, got {str(obj)[:200]!r}")
        return cls(
            run_id=clean_text(obj["run_id"]),
            state=RunState.parse(obj),
            run_page_url=clean_text(obj.get("run_page_url")),
            tasks=tuple(TaskRun.parse(t) for t in obj.get("tasks") or () if isinstance(t, Mapping)),
        )

    def latest_tasks(self) -> list[TaskRun]:
        """The newest attempt of each task: a task retried by Databricks appears once per attempt,
        and only its last attempt says how it ended. A run without tasks stands for itself."""
        latest: dict[str, TaskRun] = {}
        for task in self.tasks:
            if task.task_key not in latest or task.attempt >= latest[task.task_key].attempt:
                latest[task.task_key] = task
        return list(latest.values()) or [TaskRun("", self.run_id, 0, self.state)]

    def failed_tasks(self) -> list[TaskRun]:
        """Tasks that failed on their own (not merely because something upstream did); for a run
        without tasks that did not succeed, the run itself."""
        if not self.tasks:
            return [] if self.state.job_state is JobState.SUCCEEDED else self.latest_tasks()
        return [
            t for t in self.latest_tasks()
            if t.state.is_terminal and t.state.job_state is JobState.FAILED
            and t.state.result not in ("UPSTREAM_FAILED", "EXCLUDED")
        ]

    def task_summary(self) -> str:
        """``ingest=SUCCESS, transform=FAILED, report=UPSTREAM_FAILED`` — per-task states, in order."""
        return ", ".join(f"{t.task_key}={t.state.label}" for t in self.latest_tasks())


def merge_pages(first: Mapping[str, Any], pages: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One run from ``runs/get`` pages: API 2.2 returns at most 100 tasks per page, repeating the
    other fields; the arrays are concatenated."""
    merged = dict(first)
    for page in pages:
        for field in ("tasks", "job_clusters", "job_parameters", "repair_history", "iterations"):
            if page.get(field):
                merged[field] = [*merged.get(field, []), *page[field]]
    merged.pop("next_page_token", None)
    merged.pop("has_more", None)
    return merged
