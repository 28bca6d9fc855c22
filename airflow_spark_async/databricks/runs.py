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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_spark_async.core.backend import JobState, JobStatus
from airflow_spark_async.core.errors import ServerError

__all__ = ["Run", "RunState", "TaskOutput", "TaskRun", "clean_text", "merge_pages", "trim"]

_P, _R, _F, _C = JobState.PENDING, JobState.RUNNING, JobState.FAILED, JobState.CANCELLED
#: life_cycle_state → ours, and why a run is there. TERMINATING alone is not an end, nor a cancel:
#: a run that finished its work passes through it too; with ``user_cancelled_or_timedout`` it is a
#: cancel in progress. TERMINATED: the result decides (:data:`RESULTS`).
LIFE_CYCLES: dict[str, tuple[JobState, str]] = {
    "PENDING": (_P, ""), "QUEUED": (_P, ""), "BLOCKED": (_P, ""), "WAITING_FOR_RETRY": (_P, ""),
    "RUNNING": (_R, ""), "TERMINATING": (_R, ""), "TERMINATED": (_F, ""),
    "SKIPPED": (_F, "the run was skipped (a run of the same job was still active, or the job is paused)"),
    "INTERNAL_ERROR": (_F, "Databricks reported an internal error (platform, cluster or storage failure)"),
}
#: result_state of a TERMINATED run → ours, and what it means
RESULTS: dict[str, tuple[JobState, str]] = {
    "SUCCESS": (JobState.SUCCEEDED, ""),
    # Databricks' own word for a run whose leaf tasks succeeded although others failed (run_if
    # conditions let it continue): a success, logged with the failed tasks named.
    "SUCCESS_WITH_FAILURES": (JobState.SUCCEEDED, "the run's leaf tasks succeeded although some tasks failed"),
    "FAILED": (_F, ""),
    "TIMEDOUT": (_F, "the run reached its timeout_seconds"),
    "MAXIMUM_CONCURRENT_RUNS_REACHED": (_F, "the job already had max_concurrent_runs active runs, so this run "
                                            "never started"),
    "UPSTREAM_FAILED": (_F, "a task it depends on failed"),
    "EXCLUDED": (_F, "its run_if condition was not met, so it did not run"),
    "DISABLED": (_F, "the task or job is disabled"),
    "CANCELED": (_C, "the run was cancelled"),
    "UPSTREAM_CANCELED": (_C, "a task it depends on was cancelled"),
}
#: v2 names (status.state, or the termination code of a TERMINATED run) → classic ones; a code that
#: is neither a classic result nor a life cycle (DRIVER_ERROR …) is a FAILED result
_V2_NAMES = {"WAITING": "WAITING_FOR_RETRY", "USER_CANCELED": "CANCELED",
             "MAX_CONCURRENT_RUNS_EXCEEDED": "MAXIMUM_CONCURRENT_RUNS_REACHED"}
_V2_RESULTS = frozenset({"SUCCESS", "SUCCESS_WITH_FAILURES", "CANCELED", "DISABLED", "MAXIMUM_CONCURRENT_RUNS_REACHED"})


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
        if life := clean_text(state.get("life_cycle_state")).upper():
            return cls(life, clean_text(state.get("result_state")).upper() or None, message, code, queue,
                       state.get("user_cancelled_or_timedout") is True)
        v2 = clean_text(status.get("state")).upper() or "UNKNOWN"
        if v2 != "TERMINATED":
            return cls(_V2_NAMES.get(v2, v2), None, message, code, queue)
        name = _V2_NAMES.get(code or "", code or "")
        if name in LIFE_CYCLES:  # SKIPPED, INTERNAL_ERROR
            return cls(name, None, message, code, queue)
        return cls("TERMINATED", name if name in _V2_RESULTS else "FAILED", message, code, queue)

    @property
    def job_state(self) -> JobState:
        if self.life_cycle == "TERMINATED":
            return RESULTS.get(self.result or "", (_F, ""))[0]
        if self.life_cycle == "TERMINATING" and self.cancelled:
            return JobState.CANCELLING  # being cancelled (or timed out): ending, never reattached to
        return LIFE_CYCLES.get(self.life_cycle, (_P, ""))[0]  # unknown: keep waiting

    @property
    def is_terminal(self) -> bool:
        return self.job_state.is_terminal

    @property
    def label(self) -> str:
        """What users match on and read in logs: the result once there is one, else the life cycle."""
        return self.result or self.life_cycle

    def explain(self) -> str:
        """One line: why the run is where it is, from Databricks' words and ours."""
        parts = [(RESULTS if self.result else LIFE_CYCLES).get(self.label, (_P, ""))[1]]
        if self.life_cycle == "TERMINATED" and self.result and self.result not in RESULTS:
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
        return cls(clean_text(obj.get("task_key")) or "?", clean_text(obj.get("run_id")),
                   int(obj.get("attempt_number") or 0), RunState.parse(obj), "notebook_task" in obj)

    @property
    def title(self) -> str:
        """How failures name it: ``task 'ingest'``, or ``the run``."""
        return f"task {self.task_key!r}" if self.task_key else "the run"


@dataclasses.dataclass(frozen=True)
class TaskOutput:
    """What ``runs/get-output`` says of one task run; empty when it could not be read.

    :param notebook_result: the ``dbutils.notebook.exit`` value, ``None`` if the notebook gave none.
    """

    error: str = ""
    trace: str = ""
    logs: str = ""
    logs_truncated: bool = False
    notebook_result: str | None = None
    notebook_truncated: bool = False

    @classmethod
    def parse(cls, obj: Any) -> TaskOutput:
        obj, notebook = _mapping(obj), _mapping(_mapping(obj).get("notebook_output"))
        return cls(clean_text(obj.get("error")), clean_text(obj.get("error_trace")), clean_text(obj.get("logs")),
                   bool(obj.get("logs_truncated")), str(notebook["result"]) if "result" in notebook else None,
                   bool(notebook.get("truncated")))


#: characters of error traces kept in a failure's diagnostics (the exception shows the last 4000)
TRACE_LIMIT = 3600


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
        return cls(clean_text(obj["run_id"]), RunState.parse(obj), clean_text(obj.get("run_page_url")),
                   tuple(TaskRun.parse(t) for t in obj.get("tasks") or () if isinstance(t, Mapping)))

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
        return [t for t in self.latest_tasks() if t.state.is_terminal and t.state.job_state is JobState.FAILED
                and t.state.result not in ("UPSTREAM_FAILED", "EXCLUDED")]

    def task_summary(self) -> str:
        """``ingest=SUCCESS, transform=FAILED, report=UPSTREAM_FAILED`` — per-task states, in order."""
        return ", ".join(f"{t.task_key}={t.state.label}" for t in self.latest_tasks())

    def status(self) -> JobStatus:
        """What the run object itself says (no further requests)."""
        state, many = self.state, len(self.tasks) > 1
        message = f"queued: {state.queue_reason}" if not state.is_terminal and state.queue_reason else None
        return JobStatus(self.run_id, state.job_state, state.label, message=message or state.explain() or None,
                         diagnostics=f"tasks: {self.task_summary()}" if many else None,
                         links={"run_page_url": self.run_page_url} if self.run_page_url else {})

    def explained(self, failed: Sequence[tuple[TaskRun, TaskOutput]]) -> JobStatus:
        """The status with every failed task named with its own error, and its trace kept.

        The message carries the names, errors and per-task states (it heads the task's exception);
        the traces go to ``diagnostics``, trimmed so that all of them fit in what the exception shows.
        """
        status = self.status()
        lines = [status.message or self.state.label]
        lines += [f"{task.title} failed: {out.error or (task.task_key and task.state.explain()) or 'no error reported'}"
                  for task, out in failed]
        traces = [(task, out.trace) for task, out in failed if out.trace]
        limit = max(800, TRACE_LIMIT // max(1, len(traces)))
        return dataclasses.replace(
            status, message="; ".join(lines) + (f" (tasks: {self.task_summary()})" if len(self.tasks) > 1 else ""),
            diagnostics="\n".join(f"--- {task.title} (run {task.run_id}) error trace ---\n{trim(trace, limit)}"
                                  for task, trace in traces) or None)


def task_log(run: Run, task: TaskRun, out: TaskOutput, tail_lines: int) -> str:
    """One task's part of the task log: its state, error, trace, notebook result and log tail."""
    name = f"task {task.task_key} (run {task.run_id})" if task.task_key else f"run {run.run_id}"
    lines = [f"----- {name}: {task.state.label} -----", *([f"error: {out.error}"] if out.error else []),
             *([trim(out.trace, TRACE_LIMIT)] if out.trace else []),
             *([f"notebook result: {trim(out.notebook_result, 1000)}"] if clean_text(out.notebook_result) else [])]
    if out.logs:
        lines.append("\n".join(out.logs.splitlines()[-tail_lines:]))
        if out.logs_truncated:
            lines.append("(Databricks truncated these logs; the run page has all of them)")
    return "\n".join(lines)


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
