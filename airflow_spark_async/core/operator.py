"""The base operator: submit or reattach, push the id and links, defer, resume exactly once.

A backend's operator subclasses :class:`SparkJobOperator`, names its trigger class and
its links, and — if its users expect the official provider's arguments — maps them to a
:class:`SparkJob` in ``build_job``. Everything else is here:

* **Never double-submit.** A key derived from (dag, task, run, map index) goes with every
  submission. A retry looks the key up (through the backend, or the Airflow-side ledger
  when the API cannot) and reattaches to a job that still runs; a job that already ended
  is never reported as this try's result — a new one is submitted.
* **Free the worker.** With ``deferrable=True`` the worker slot is released right after
  the submission; the trigger watches the job in the triggerer.
* **Hooks, not overrides.** A backend whose official twin may return before the job ends sets
  :attr:`waits`; one that returns something other than the job id overrides :meth:`result`;
  one that pushes more XComs once the job exists overrides :meth:`after_submit`.
* **Same semantics without deferral.** ``deferrable=False`` runs the very same poll loop on
  the worker through the sync bridge, and ``on_kill`` cancels the job.
* **Failure explains itself.** The driver log tail and the backend's own error reach the
  task log; the exception says what happened to which job.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from airflow.configuration import conf
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from airflow_spark_async.core.backend import Backend, JobStatus
from airflow_spark_async.core.connections import load_connection
from airflow_spark_async.core.errors import BackendError, ConfigurationError, JobNotFoundError
from airflow_spark_async.core.events import EventStatus, JobEvent
from airflow_spark_async.core.keys import job_key_from_context
from airflow_spark_async.core.ledger import AirflowVariableLedger, KeyLedger
from airflow_spark_async.core.links import JobLink, push_links
from airflow_spark_async.core.policy import PollPolicy
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.core.states import JobState
from airflow_spark_async.core.sync import call_backend, run_sync
from airflow_spark_async.core.trigger import SparkJobTrigger, watch_job

if TYPE_CHECKING:
    from airflow.sdk import Connection, Context

T = TypeVar("T")

__all__ = ["SparkJobFailed", "SparkJobOperator", "SparkJobTimeout", "default_deferrable", "seconds"]


class SparkJobFailed(AirflowException):
    """The Spark job ended without success; the message carries the backend's reason."""


class SparkJobTimeout(SparkJobFailed):
    """The job passed the task's deadline and was cancelled."""


def default_deferrable() -> bool:
    """``[operators] default_deferrable``, as the official providers read it."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def seconds(value: timedelta | float | int | None, name: str) -> float | None:
    """A duration argument as seconds, rejecting zero, negatives and other types early."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds or a timedelta, got {value!r}")
    return float(value)


class SparkJobOperator(BaseOperator):
    """Submit a Spark job, free the worker while it runs, and succeed or fail with it.

    :param job: the :class:`SparkJob` to run (or its dict form). Templated.
    :param conn_id: the Airflow connection of the backend. Templated.
    :param poll_interval: seconds between status polls (> 0).
    :param poll_policy: further polling rules (:class:`PollPolicy` or its dict form).
    :param deferrable: free the worker slot while the job runs; defaults to
        ``[operators] default_deferrable``.
    :param job_timeout: give up on the job after this long (timedelta or seconds) — the job is
        cancelled and the task fails. Defaults to ``execution_timeout``; Airflow itself does not
        enforce ``execution_timeout`` while a task is deferred.
    :param reattach: on retry, reattach to the job of an earlier try if it is still running.
    :param log_tail_lines: driver log lines shown in the task log at the end (five times as
        many on failure); 0 to skip.
    :param backend_options: options of the backend (see each backend's docs).
    """

    trigger_class: ClassVar[type[SparkJobTrigger]]
    link_classes: ClassVar[tuple[type[JobLink], ...]] = ()
    default_conn_id: ClassVar[str] = ""
    template_fields: Sequence[str] = ("job", "conn_id")
    ui_color = "#f4a460"

    def __init__(
        self,
        *,
        job: SparkJob | Mapping[str, Any] | None = None,
        conn_id: str | None = None,
        poll_interval: float = 10.0,
        poll_policy: PollPolicy | Mapping[str, Any] | None = None,
        deferrable: bool | None = None,
        job_timeout: timedelta | float | None = None,
        reattach: bool = True,
        log_tail_lines: int = 100,
        backend_options: Mapping[str, Any] | None = None,
        ledger: KeyLedger | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job = SparkJob.from_dict(job) if isinstance(job, Mapping) else job
        self.conn_id = conn_id or self.default_conn_id
        if not self.conn_id:
            raise ConfigurationError(f"{type(self).__name__}: conn_id is required")
        base = poll_policy.to_dict() if isinstance(poll_policy, PollPolicy) else dict(poll_policy or {})
        self.poll_policy = PollPolicy.from_dict({**base, "interval": poll_interval})
        self.poll_interval = self.poll_policy.interval
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)
        self.job_timeout = seconds(job_timeout, "job_timeout")
        self.reattach = reattach
        if isinstance(log_tail_lines, bool) or not isinstance(log_tail_lines, int) or log_tail_lines < 0:
            raise ConfigurationError(f"log_tail_lines must be an integer >= 0, got {log_tail_lines!r}")
        self.log_tail_lines = log_tail_lines
        self.backend_options = dict(backend_options or {})
        self.backend_class.validate_options(self.backend_options)
        self.ledger: KeyLedger = ledger or AirflowVariableLedger()
        self._job_id: str | None = None
        self._conn: Connection | None = None

    @property
    def backend_class(self) -> type[Backend]:
        return self.trigger_class.backend_class

    # -- hooks for backends ----------------------------------------------------------------

    @property
    def waits(self) -> bool:
        """Whether the task waits for the job to end (some official operators make it optional)."""
        return True

    def result(self, context: Context, job_id: str) -> Any:
        """The task's return value once the job succeeded (or was submitted, when not waiting)."""
        return job_id

    def after_submit(self, context: Context, status: JobStatus) -> None:
        """Called once the job exists (submitted or reattached), before waiting for it."""

    def backend_call(self, call: Callable[[Backend], Awaitable[T]]) -> T:
        """Run ``call(backend)`` through the sync bridge: the worker's one way to the backend."""
        return call_backend(self.backend_class, self.conn_id, self.backend_options, call, conn=self._connection())

    # -- what to run ---------------------------------------------------------------------

    def build_job(self, context: Context) -> SparkJob:
        """The job to submit, after templating; names it after the task if it has no name."""
        if self.job is None:
            raise ConfigurationError(f"{type(self).__name__}: job is required")
        job = SparkJob.from_dict(self.job.to_dict())  # re-validate the rendered values
        if not job.name:
            ti = context["ti"]
            job = dataclasses.replace(job, name=f"{ti.dag_id}.{ti.task_id}")
        return job

    # -- the worker's part ---------------------------------------------------------------

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = load_connection(self.conn_id)
        return self._conn

    def execute(self, context: Context) -> Any:
        self._connection()  # a missing connection fails here, before anything is submitted
        job = self.build_job(context)
        key = job_key_from_context(context)
        status = self.backend_call(lambda backend: self._submit_or_reattach(backend, job, key))
        self._job_id = status.job_id
        context["ti"].xcom_push(key="job_id", value=status.job_id)
        push_links(context, self.link_classes, dict(status.links))
        self.after_submit(context, status)
        if not self.waits:
            self.log.info("%s job %s submitted; not waiting for it", self.backend_class.name, status.job_id)
            self.forget_job(context)
            return self.result(context, status.job_id)
        return self._wait(context, status.job_id, self._deadline())

    def _wait(self, context: Context, job_id: str, deadline: float | None) -> Any:
        """Defer to the trigger, or run its loop here when ``deferrable=False``."""
        trigger = self.trigger_class(
            conn_id=self.conn_id,
            job_id=job_id,
            deadline=deadline,
            policy=self.poll_policy.to_dict(),
            backend_options=self.backend_options,
        )
        if self.deferrable:
            self.defer(trigger=trigger, method_name="execute_complete")
        trigger.preloaded_connection = self._connection()
        event = run_sync(lambda: watch_job(trigger, log=self.log))
        return self.execute_complete(context, event.to_payload())

    def _deadline(self) -> float | None:
        limit = self.job_timeout
        if limit is None and self.execution_timeout is not None:
            limit = self.execution_timeout.total_seconds()
        return None if limit is None else time.time() + limit

    async def _submit_or_reattach(self, backend: Backend, job: SparkJob, key: str) -> JobStatus:
        if self.reattach:
            existing = await self._find_existing(backend, key)
            if existing is not None and not existing.is_terminal:
                self.log.info("Reattaching to %s job %s (%s) of an earlier try", backend.name, existing.job_id,
                              existing.backend_state)
                return existing
            if existing is not None:
                self.log.info("The earlier try's job %s ended %s; submitting a new one", existing.job_id,
                              existing.backend_state)
        status = await backend.submit(job, key=key)
        self.log.info("Submitted %s job %s (key %s)", backend.name, status.job_id, key)
        if not backend.supports_find_by_key:
            self.ledger.remember(key, backend.name, status.job_id)
        return status

    async def _find_existing(self, backend: Backend, key: str) -> JobStatus | None:
        if backend.supports_find_by_key:
            return await backend.find_by_key(key)
        job_id = self.ledger.recall(key, backend.name)
        if job_id is None:
            return None
        try:
            return await backend.status(job_id)
        except JobNotFoundError:
            return None

    # -- the resume --------------------------------------------------------------------------

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> Any:
        """Turn the trigger's event into the task's outcome; safe to run more than once."""
        ev = JobEvent.from_payload(event)
        self._job_id = ev.job_id
        push_links(context, self.link_classes, dict(ev.links))  # some links exist only once the job ran
        if ev.status is EventStatus.UNREACHABLE:
            return self._recheck(context, ev)
        if ev.status is EventStatus.TIMEOUT:
            self._cancel(ev.job_id)
            self.forget_job(context)
            raise SparkJobTimeout(f"{ev.backend} job {ev.job_id} passed its deadline and was cancelled")
        self._show_log_tail(ev)
        self.forget_job(context)
        if ev.status is EventStatus.SUCCESS:
            self.log.info("%s job %s succeeded (%s) in %.0fs", ev.backend, ev.job_id, ev.backend_state,
                          ev.elapsed or 0)
            return self.result(context, ev.job_id)
        raise SparkJobFailed(_failure_text(ev))

    def _recheck(self, context: Context, ev: JobEvent) -> Any:
        """The triggerer lost the API for a while: look again before failing anything."""
        try:
            status = self.backend_call(lambda backend: backend.status(ev.job_id))
        except BackendError as exc:
            raise SparkJobFailed(
                f"{ev.backend} job {ev.job_id} could not be polled ({ev.message}) and is still unreachable "
                f"({exc}); it may still be running"
            ) from exc
        if status.is_terminal:
            done = dataclasses.replace(
                ev,
                status=EventStatus.for_final_state(status.state is JobState.SUCCEEDED),
                state=status.state.value,
                backend_state=status.backend_state,
                message=status.message,
                diagnostics=status.diagnostics,
            )
            return self.execute_complete(context, done.to_payload())
        self.log.warning("API was unreachable for a while but job %s still runs; waiting again", ev.job_id)
        return self._wait(context, ev.job_id, ev.deadline)

    def _cancel(self, job_id: str) -> None:
        try:
            self.backend_call(lambda backend: backend.cancel(job_id))
            self.log.info("Cancelled job %s", job_id)
        except BackendError as exc:
            self.log.error("Could not cancel job %s: %s", job_id, exc)

    def forget_job(self, context: Context) -> None:
        """This try is done with its job: drop what reattach would have needed."""
        if self.reattach and not self.backend_class.supports_find_by_key:
            self.ledger.forget(job_key_from_context(context))

    def _show_log_tail(self, ev: JobEvent) -> None:
        if self.log_tail_lines <= 0:
            return
        lines = self.log_tail_lines * (1 if ev.status is EventStatus.SUCCESS else 5)
        try:
            tail = self.backend_call(lambda backend: backend.logs(ev.job_id, tail_lines=lines))
        except BackendError as exc:
            self.log.warning("Could not fetch the driver log of %s: %s", ev.job_id, exc)
            return
        if tail:
            self.log.info("Driver log of %s (last %d lines):\n%s", ev.job_id, lines, tail)

    def on_kill(self) -> None:
        """Cancel the job when the task is killed on the worker (``deferrable=False``)."""
        if self._job_id:
            self._cancel(self._job_id)


def _failure_text(ev: JobEvent) -> str:
    parts = [f"{ev.backend} job {ev.job_id} ended {ev.backend_state or ev.status.value}"]
    if ev.message:
        parts.append(ev.message.strip())
    if ev.diagnostics:
        parts.append(ev.diagnostics.strip()[-4000:])
    return ": ".join(parts[:2]) + ("\n" + parts[2] if len(parts) > 2 else "")
