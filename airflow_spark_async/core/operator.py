"""The base operator: submit or reattach, push the id and links, defer, resume exactly once.

A backend's operator subclasses :class:`SparkJobOperator`, names its trigger class and
its links, and builds its backend's request in :meth:`~SparkJobOperator.build_request`.
Everything else is here:

* **Never double-submit.** A key derived from (dag, task, run, map index) goes with every
  submission. A retry looks the key up (through the backend, or the Airflow-side ledger
  when the API cannot) and reattaches to a job that still runs; a job that already ended
  is never reported as this try's result — a new one is submitted.
* **Free the worker.** With ``deferrable=True`` the worker slot is released right after
  the submission; the trigger watches the job in the triggerer.
* **Hooks, not overrides.** A backend reaches the core only through public hooks, never an
  underscore name (``tests/test_no_private_access.py`` checks it): ``build_request`` (what to
  submit), ``wait_for_termination`` (official twins that may return before the job ends),
  ``after_submit`` (more XComs once the job exists), ``trigger_kwargs`` (more trigger
  arguments), ``on_complete`` / ``result`` (the success path and the return value),
  ``on_failure`` (diagnostics, clean-up), and ``connection``, ``backend_call`` and
  ``cancel_job`` to act on the backend.
* **Same semantics without deferral.** ``deferrable=False`` runs the very same poll loop on
  the worker through the sync bridge, and ``on_kill`` cancels the job.
* **Failure explains itself.** The driver log tail and the backend's own error reach the
  task log; the exception says what happened to which job.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, TypeVar

from airflow.configuration import conf
from airflow.sdk import BaseOperator, BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from airflow_spark_async.core.airflow_versions import AirflowException
from airflow_spark_async.core.backend import (
    Backend,
    JobState,
    JobStatus,
    RequestT,
    cancel_job,
    job_key_from_context,
    key_family,
    submit_job,
)
from airflow_spark_async.core.errors import BackendError, ConfigurationError, JobNotFoundError, TransientError
from airflow_spark_async.core.ledger import KeyLedger, LedgerEntry, default_ledger, read_entry, write_entry
from airflow_spark_async.core.retry import PollPolicy, clock
from airflow_spark_async.core.runtime import call_backend, load_connection, run_sync
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.core.trigger import DefersToTrigger, EventStatus, JobEvent, Reason, SparkJobTrigger, watch_job

if TYPE_CHECKING:
    from airflow.sdk import Connection, Context
    from airflow.sdk.types import TaskInstanceKey

T = TypeVar("T")

#: the deadline fires this many seconds (at most 10 % of the budget) before execution_timeout
DEADLINE_MARGIN = 60.0
#: how long past its deadline a job whose state cannot be read is still re-checked, before the task
#: gives up on learning its outcome (it may have succeeded in time: I2)
POST_DEADLINE_PATIENCE = 3600.0
#: resends of a submit whose answer was lost, where the API deduplicates by token
IDEMPOTENT_RESENDS = 3
#: cancels of a job that could not be recorded, before recording it is tried once more
UNTRACKED_CANCEL_ATTEMPTS = 3

__all__ = [
    "JobLink",
    "SparkJobFailed",
    "SparkJobOperator",
    "SparkJobTimeout",
    "default_deferrable",
    "failure_text",
    "push_link",
    "push_links",
    "seconds",
    "start_links",
]


# -------------------- links -----------------------------------------------------------------
# Extra links whose URL the operator computed when it submitted the job.
#
# Airflow 3 resolves an operator link from the XCom ``_link_<ClassName>`` the task pushed,
# so each backend's link class only names itself and the key of ``JobStatus.links`` it shows.

#: the operator attribute holding the links of the running task process (:func:`start_links`)
LINKS_ATTRIBUTE = "spark_async_links"


class LinkValues(dict[str, Any]):
    """What one task process pushed for its links, by XCom key.

    ``complete`` in the process that starts a try: Airflow cleared the try's XComs, so a link not
    pushed here has no value anywhere, and none needs to be asked for.
    """

    def __init__(self, *, complete: bool) -> None:
        super().__init__()
        self.complete = complete


def start_links(operator: Any, *, resumed: bool) -> None:
    """Start recording the links this task process pushes (:func:`push_links`); call it first thing
    in ``execute`` (``resumed=False``) and in the method a deferral resumes (``resumed=True``).

    Why: at the end of every task process Airflow asks each of the operator's links for its value
    (and stores the answer). A link asked for an XCom that no process pushed yet makes the API
    answer 404, which the task runner logs at error level — once per link and process, so a
    scheduler log filled with "XCom not found" lines. With the record, a link answers what this
    process pushed, and asks Airflow only for what an earlier process of the try may have stored.
    """
    setattr(operator, LINKS_ATTRIBUTE, LinkValues(complete=not resumed))


class JobLink(BaseOperatorLink):
    """A link to a page about the job; subclasses set ``name`` and ``link_key``."""

    name: ClassVar[str] = "Spark job"  # type: ignore[misc]
    #: the key in the job's links mapping that holds this link's URL
    link_key: ClassVar[str] = ""

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return self.stored(operator, ti_key) or ""

    def stored(self, operator: Any, ti_key: TaskInstanceKey) -> Any:
        """The value pushed for this link: this process's record (:func:`start_links`) when it
        knows, else the XCom an earlier process of the try stored."""
        record = getattr(operator, LINKS_ATTRIBUTE, None)
        if isinstance(record, LinkValues) and (record.complete or self.xcom_key in record):
            return record.get(self.xcom_key)
        return XCom.get_value(key=self.xcom_key, ti_key=ti_key)


def push_link(context: Any, link: type[JobLink], value: Any) -> None:
    """Push ``value`` as ``link``'s XCom, and record it for the task's links (:func:`start_links`)."""
    key = link().xcom_key
    context["ti"].xcom_push(key=key, value=value)
    record = getattr(context.get("task"), LINKS_ATTRIBUTE, None)
    if isinstance(record, LinkValues):
        record[key] = value


def push_links(context: Any, links_cls: tuple[type[JobLink], ...], urls: dict[str, str]) -> None:
    """Push the URL of every link class whose ``link_key`` is in ``urls``."""
    for cls in links_cls:
        url = urls.get(cls.link_key)
        if url:
            push_link(context, cls, url)


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


class SparkJobOperator(DefersToTrigger, BaseOperator, Generic[RequestT]):
    """Submit a Spark job, free the worker while it runs, and succeed or fail with it.

    Generic in the request its backend submits (``SparkJobOperator[DatabricksRun]``): the type
    :meth:`build_request` returns.

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
    :param wait_for_termination: wait until the job ends (the default); ``False`` submits, pushes
        the id and returns :meth:`result` at once — the official operators' argument.
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
        wait_for_termination: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.wait_for_termination = bool(wait_for_termination)
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
        self._ledger = ledger
        self._job_id: str | None = None
        self._conn: Connection | None = None

    @property
    def ledger(self) -> KeyLedger:
        """Where jobs of backends without lookup by key are recorded (default: Airflow Variables)."""
        return self._ledger or default_ledger()

    # -- hooks for backends ----------------------------------------------------------------

    def build_request(self, context: Context, key: str, attempt: int) -> RequestT:
        """The request to submit for this try, after templating: ``key`` is the task's key (the
        backend tags the job with it), ``attempt`` the try number (for per-try tokens). The
        default is :meth:`build_job`, for backends whose request is the :class:`SparkJob`."""
        return self.build_job(context)  # type: ignore[return-value]

    def build_job(self, context: Context) -> SparkJob:
        """The rendered :class:`SparkJob`, re-validated, named after the task if it has no name."""
        if self.job is None:
            raise ConfigurationError(f"{type(self).__name__}: job is required")
        job = SparkJob.from_dict(self.job.to_dict())  # re-validate the rendered values
        if not job.name:
            ti = context["ti"]
            job = dataclasses.replace(job, name=f"{ti.dag_id}.{ti.task_id}")
        return job

    def after_submit(self, context: Context, status: JobStatus) -> None:
        """Called once the job exists (submitted or reattached), before waiting for it."""

    def on_complete(self, context: Context, event: JobEvent) -> Any:
        """The job succeeded (called once per successful outcome, also after a re-check): the
        task's return value. Default: :meth:`result`."""
        return self.result(context, event.job_id)

    def on_failure(self, context: Context, event: JobEvent) -> NoReturn:
        """The job ended without success: raise. A backend adds its diagnostics, or cleans up
        first; should an override return, the core raises :func:`failure_text` itself."""
        raise SparkJobFailed(failure_text(event))

    def result(self, context: Context, job_id: str) -> Any:
        """The task's return value once the job succeeded (or was submitted, when not waiting)."""
        return job_id

    # -- the worker's way to the backend -------------------------------------------------------

    def connection(self) -> Connection:
        """This task's Airflow connection, read once per try (a missing one fails here, early)."""
        if self._conn is None:
            self._conn = load_connection(self.conn_id)
        return self._conn

    def backend_call(self, call: Callable[[Backend[Any]], Awaitable[T]]) -> T:
        """Run ``call(backend)`` through the sync bridge: the worker's one way to the backend."""
        return call_backend(self.backend_class, self.conn_id, self.backend_options, call, conn=self.connection())

    def cancel_job(self, job_id: str, key: str | None = None) -> bool:
        """Cancel the job (``key``: the key it must carry); ``False`` (logged) if the backend
        could not be reached."""
        try:
            self.backend_call(lambda backend: cancel_job(backend, job_id, key))
        except BackendError as exc:
            self.log.error("Could not cancel job %s: %s", job_id, exc)
            return False
        self.log.info("Cancelled job %s", job_id)
        return True

    # -- the worker's part ---------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        start_links(self, resumed=False)
        self.connection()  # a missing connection fails here, before anything is submitted
        key = job_key_from_context(context)
        attempt = int(getattr(context["ti"], "try_number", None) or 1)
        request = self.build_request(context, key, attempt)
        status = self.backend_call(lambda backend: self._submit_or_reattach(backend, request, key, attempt))
        self._job_id = status.job_id
        context["ti"].xcom_push(key="job_id", value=status.job_id)
        push_links(context, self.link_classes, dict(status.links))
        self.after_submit(context, status)
        if not self.wait_for_termination:
            self.log.info("%s job %s submitted; not waiting for it", self.backend_class.name, status.job_id)
            self.forget_job(context)
            return self.result(context, status.job_id)
        return self._wait(context, status.job_id, self._deadline(context), key=key, started_at=clock.now())

    def _wait(
        self,
        context: Context,
        job_id: str,
        deadline: float | None,
        *,
        key: str | None = None,
        started_at: float | None = None,
        recheck: int = 0,
    ) -> Any:
        """Defer to the trigger, or run its loop here when ``deferrable=False``."""
        trigger = self.build_trigger(job_id, deadline=deadline, key=key, started_at=started_at, recheck=recheck,
                                     try_number=getattr(context["ti"], "try_number", None))
        if self.deferrable:
            self.defer(trigger=trigger, method_name="execute_complete")
        trigger.preloaded_connection = self.connection()
        event = run_sync(lambda: watch_job(trigger, log=self.log))
        return self.execute_complete(context, event.to_payload())

    def _deadline(self, context: Context) -> float | None:
        """The trigger's absolute deadline: ``job_timeout`` from now, and ``execution_timeout``
        from the start of this try — a little before Airflow would time the try out itself (it
        is about to enforce ``execution_timeout`` across deferrals, cancelling triggers without
        ``on_kill``), so that the job is always cancelled by us first."""
        now = clock.now()
        limits = [now + self.job_timeout] if self.job_timeout else []
        if self.execution_timeout is not None:
            budget = self.execution_timeout.total_seconds()
            started = getattr(context["ti"], "start_date", None)
            begin = started.timestamp() if hasattr(started, "timestamp") else now
            limits.append(begin + budget - min(DEADLINE_MARGIN, budget * 0.1))
        return min(limits) if limits else None

    # -- submit or reattach ----------------------------------------------------------------------

    async def _submit_or_reattach(self, backend: Backend[Any], request: Any, key: str, attempt: int) -> JobStatus:
        """This try's job: an earlier try's of the same key if it still runs, else a new one.

        Jobs of the same task instance under another generation (it was cleared since) are
        cancelled first, so no two jobs of one task instance run at once (I1).
        """
        family = key_family(key)
        known = await self._known_jobs(backend, family, key)
        keep: JobStatus | None = None
        for st in reversed(known):  # oldest first: of two jobs of one key, every try keeps the older
            if not st.may_run:
                continue
            if self.reattach and st.key == key and st.state is not JobState.CANCELLING and keep is None:
                keep = st
                continue
            why = "still being cancelled" if st.state is JobState.CANCELLING else (
                "a duplicate of this try's job" if st.key == key else "left from before the task was cleared")
            self.log.warning("Cancelling %s job %s (%s, key %s): %s", backend.name, st.job_id, st.backend_state,
                             st.key or "unknown", why)
            if st.state is not JobState.CANCELLING:
                await cancel_job(backend, st.job_id, st.key)
        if keep is not None:
            self.log.info("Reattaching to %s job %s (%s) of an earlier try", backend.name, keep.job_id,
                          keep.backend_state)
            return keep
        return await self._submit(backend, request, key, family, attempt)

    async def _known_jobs(self, backend: Backend[Any], family: str, key: str) -> Sequence[JobStatus]:
        """Every job the backend or the ledger knows for this task instance, newest first."""
        if backend.supports_find_by_key:
            return await _find_jobs(backend, family, key)
        entry = read_entry(self.ledger, family, backend.name)
        if entry is None:
            return []
        if entry.job_id is None:
            self.log.warning(
                "An earlier try of this task recorded that it was about to submit (key %s) but not the job it got: "
                "if the worker died in between, that %s job runs untracked — the backend cannot look it up by key",
                entry.key, backend.name)
            return []
        try:
            st = await backend.status(entry.job_id)
        except JobNotFoundError:
            try:  # a 404 may be a proxy's: only a second one in a row is taken as "gone"
                st = await backend.status(entry.job_id)
            except JobNotFoundError:
                return []
        return [dataclasses.replace(st, key=st.key or entry.key or None)]

    async def _submit(self, backend: Backend[Any], request: Any, key: str, family: str, attempt: int) -> JobStatus:
        ledger = None if backend.supports_find_by_key else self.ledger
        if ledger is not None:  # intent first: a failure here submits nothing
            write_entry(ledger, family, backend.name, LedgerEntry(key=key))
        try:
            status = await self._send(backend, request, key, attempt)
        except TransientError as exc:
            # The answer may be lost while the job was created: look for it before giving up.
            found = await backend.find_by_key(key) if backend.supports_find_by_key else None
            if found is None or not found.may_run:
                raise
            self.log.warning("The submit answer was lost (%s), but %s job %s carries this key: using it", exc,
                             backend.name, found.job_id)
            status = found
        self.log.info("Submitted %s job %s (key %s)", backend.name, status.job_id, key)
        if ledger is not None:
            try:
                write_entry(ledger, family, backend.name, LedgerEntry(key=key, job_id=status.job_id))
            except Exception:
                self.log.error("Could not record job %s; cancelling it rather than leave it untracked", status.job_id)
                await self._cancel_untracked(backend, status.job_id, key, family)
                raise
        elif not backend.idempotent_submit:
            status = await self._settle_race(backend, status, key, family)
        return dataclasses.replace(status, key=status.key or key)

    async def _send(self, backend: Backend[Any], request: Any, key: str, attempt: int) -> JobStatus:
        """Submit; where the API deduplicates by a per-try token, a lost answer is simply asked
        again — the same token returns the same job."""
        tries = IDEMPOTENT_RESENDS + 1 if backend.idempotent_submit else 1
        for n in range(1, tries + 1):
            try:
                return await submit_job(backend, request, key, attempt)
            except TransientError as exc:
                if n == tries:
                    raise
                self.log.warning("Submitting failed (%s); sending the same request again (%d/%d)", exc, n,
                                 IDEMPOTENT_RESENDS)
                await asyncio.sleep(self.poll_policy.backoff(n, retry_after=exc.retry_after))
        raise AssertionError("unreachable")

    async def _cancel_untracked(self, backend: Backend[Any], job_id: str, key: str, family: str) -> None:
        """Cancel a job whose id could not be recorded; if even that fails, try the record once more
        so that the next try can find it."""
        for attempt in range(UNTRACKED_CANCEL_ATTEMPTS):
            try:
                await cancel_job(backend, job_id, key)
                return
            except BackendError as exc:
                self.log.error("Cancelling the unrecorded job %s failed (%s)", job_id, exc)
                await asyncio.sleep(min(2.0 ** attempt, 5.0))
        try:
            write_entry(self.ledger, family, backend.name, LedgerEntry(key=key, job_id=job_id))
        except Exception as exc:
            self.log.error("Job %s runs untracked: neither recorded nor cancelled (%s); see the clean-up in the docs",
                           job_id, exc)

    async def _settle_race(self, backend: Backend[Any], mine: JobStatus, key: str, family: str) -> JobStatus:
        """Two tries that submitted at once (a zombie worker and its retry) both see both jobs; both
        keep the oldest and cancel the others, so they converge on one job."""
        same = [st for st in await _find_jobs(backend, family, key)
                if st.key == key and st.may_run and st.state is not JobState.CANCELLING]
        if len(same) < 2:
            return mine
        oldest = same[-1]
        for st in same[:-1]:
            self.log.warning("Another try submitted %s job %s for this key at the same time; keeping the older %s",
                             backend.name, st.job_id, oldest.job_id)
            await cancel_job(backend, st.job_id, key)
        return oldest

    # -- the resume --------------------------------------------------------------------------

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> Any:
        """Turn the trigger's event into the task's outcome; safe to run more than once.

        Only ``success`` and ``failed`` events are taken at their word. ``timeout``, ``unreachable``
        and ``error`` are re-checked with the worker's own connection first: a job that succeeded
        is a success whatever the trigger saw (I2), one that may still run is waited for again or
        cancelled before the task fails (I3).
        """
        start_links(self, resumed=True)
        ev = JobEvent.from_payload(event)
        self._job_id = ev.job_id
        push_links(context, self.link_classes, dict(ev.links))  # some links exist only once the job ran
        if ev.status in (EventStatus.SUCCESS, EventStatus.FAILED):
            return self._finish(context, ev)
        if ev.status is EventStatus.ERROR and ev.reason == Reason.FOREIGN.value:
            self.forget_job(context)  # our job is gone; the id names someone else's, never cancel it
            raise SparkJobFailed(f"{ev.backend} job {ev.job_id}: {ev.message}")
        try:
            status = self.backend_call(lambda backend: _recheck(backend, ev))
        except _JobGone as exc:
            self.forget_job(context)
            raise SparkJobFailed(f"{ev.backend} job {ev.job_id} is gone: {exc}; the trigger reported: "
                                 f"{ev.message}") from exc
        except BackendError as exc:
            # The job's state cannot be known from here either (still unreachable, a proxy's 404, a
            # refused token): it may run, or have succeeded, so failing now could report an error
            # for a success (I2) or orphan a running job (I3). Wait again, backing off further each
            # time; past the deadline for ``POST_DEADLINE_PATIENCE`` and at least ``error_budget``
            # more times, then give up with a timeout — cancelling first, keeping the record.
            patience_over = clock.now() >= (ev.deadline or 0.0) + POST_DEADLINE_PATIENCE
            if ev.status is EventStatus.TIMEOUT and ev.recheck >= self.poll_policy.error_budget and patience_over:
                return self._timeout(context, ev, f"its state could not be read ({exc})")
            self.log.warning("Job %s could not be re-checked (%s); it may still run, so waiting again (%d)",
                             ev.job_id, exc, ev.recheck + 1)
            return self._wait_again(context, ev)
        if ev.key and status.key and status.key != ev.key:
            self.forget_job(context)
            raise SparkJobFailed(f"{ev.backend} job id {ev.job_id} now names a job of another key ({status.key})")
        if status.is_terminal:
            return self._finish(context, _with_status(ev, status))
        if ev.status is EventStatus.TIMEOUT:
            return self._timeout(context, ev, None)
        # The job runs: whatever the trigger could not see, waiting again is right — giving up would
        # cancel a healthy job, or report an error for one that then succeeds (I2).
        self.log.warning("The trigger reported %s (%s) but job %s is %s: waiting again", ev.status.value,
                         ev.message, ev.job_id, status.backend_state)
        return self._wait_again(context, ev)

    def _wait_again(self, context: Context, ev: JobEvent) -> Any:
        return self._wait(context, ev.job_id, ev.deadline, key=ev.key, started_at=ev.started_at,
                          recheck=ev.recheck + 1)

    def _timeout(self, context: Context, ev: JobEvent, unknown: str | None) -> Any:
        cancelled = self.cancel_job(ev.job_id, ev.key)
        after = self._status_or_none(ev.job_id)  # it may have ended before the cancel: then that is the outcome
        if after is not None and after.state is JobState.SUCCEEDED:
            return self._finish(context, _with_status(ev, after))
        if cancelled and (unknown is None or after is not None):
            self.forget_job(context)
            raise SparkJobTimeout(f"{ev.backend} job {ev.job_id} passed its deadline and was cancelled")
        raise SparkJobTimeout(
            f"{ev.backend} job {ev.job_id} passed its deadline; {unknown or 'the cancel failed'}, so it stays "
            f"recorded under key {ev.key} for the next try"
        )

    def _finish(self, context: Context, ev: JobEvent) -> Any:
        self._show_log_tail(ev)
        self.forget_job(context)
        if ev.status is EventStatus.SUCCESS:
            self.log.info("%s job %s succeeded (%s) in %.0fs", ev.backend, ev.job_id, ev.backend_state,
                          ev.elapsed or 0)
            return self.on_complete(context, ev)
        self.on_failure(context, ev)
        raise SparkJobFailed(failure_text(ev))  # an on_failure that returned: a failure stays one

    def _status_or_none(self, job_id: str) -> JobStatus | None:
        try:
            return self.backend_call(lambda backend: backend.status(job_id))
        except BackendError:
            return None

    def forget_job(self, context: Context) -> None:
        """This try is done with its job: drop what reattach would have needed."""
        if not self.backend_class.supports_find_by_key:
            self.ledger.forget(key_family(job_key_from_context(context)))

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
            self.cancel_job(self._job_id)


class _JobGone(JobNotFoundError):
    """Not only a 404: the backend's own listing of the key's jobs confirms the job is gone."""


async def _recheck(backend: Backend[Any], ev: JobEvent) -> JobStatus:
    """The job's status from the worker. A 404 may be a proxy's: where the backend can list the
    key's jobs, the listing decides whether the job is really gone."""
    try:
        return await backend.status(ev.job_id)
    except JobNotFoundError as exc:
        if not (backend.supports_find_by_key and ev.key):
            raise
        for st in await _find_jobs(backend, key_family(ev.key), ev.key):
            if st.job_id == ev.job_id:
                return st
        raise _JobGone(f"neither {ev.job_id} nor any job of key {ev.key} is known to the backend ({exc})") from exc


async def _find_jobs(backend: Backend[Any], family: str, key: str) -> Sequence[JobStatus]:
    """``backend.find_jobs``, or its exact ``find_by_key`` where a backend only has that."""
    try:
        return await backend.find_jobs(family)
    except NotImplementedError:
        found = await backend.find_by_key(key)
        return [] if found is None else [dataclasses.replace(found, key=found.key or key)]


def _with_status(ev: JobEvent, status: JobStatus) -> JobEvent:
    """``ev`` turned into the final event of what the re-check saw."""
    return dataclasses.replace(
        ev,
        status=EventStatus.for_final_state(status.state is JobState.SUCCEEDED),
        state=status.state.value,
        backend_state=status.backend_state,
        message=status.message,
        diagnostics=status.diagnostics,
        links={**ev.links, **status.links},
    )


def failure_text(ev: JobEvent) -> str:
    """What a failed job's exception says: the backend, the job, its end, the backend's reason
    and (on further lines) its diagnostics — for :meth:`SparkJobOperator.on_failure` overrides
    that add their own."""
    parts = [f"{ev.backend} job {ev.job_id} ended {ev.backend_state or ev.status.value}"]
    if ev.message:
        parts.append(ev.message.strip())
    if ev.diagnostics:
        parts.append(ev.diagnostics.strip()[-4000:])
    return ": ".join(parts[:2]) + ("\n" + parts[2] if len(parts) > 2 else "")
