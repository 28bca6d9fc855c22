"""The base deferrable sensor: wait on a job someone else submitted.

A sensor only watches, so it never cancels the job (its trigger has ``owns_job=False``),
and its timeout fails the sensor, not the job. With ``deferrable=True`` (the default) it
never pokes on the worker; with ``start_from_trigger=True`` it does not even start on
one — the task begins directly in the triggerer (Airflow 3.3+ renders the templated
``job_id`` there).

A failure state is a failure everywhere: the trigger ends the watch with a ``failed`` event
(never ``success``, even where the backend calls the state a success) and the sensor fails.

Hooks for backends: :meth:`SparkJobSensor.render_job_id` (a job id made of several templated
arguments) and :meth:`~airflow_spark_async.core.trigger.DefersToTrigger.trigger_kwargs`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseSensorOperator
from airflow.triggers.base import StartTriggerArgs

from airflow_spark_async.core.backend import JobState
from airflow_spark_async.core.errors import BackendError, ConfigurationError, TransientError
from airflow_spark_async.core.operator import SparkJobFailed, seconds, start_links
from airflow_spark_async.core.retry import PollPolicy
from airflow_spark_async.core.runtime import call_backend, load_connection
from airflow_spark_async.core.trigger import DefersToTrigger, EventStatus, JobEvent, SparkJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["SparkJobSensor"]


class SparkJobSensor(DefersToTrigger, BaseSensorOperator):
    """Wait until a Spark job ends; succeed if it ended in a target state.

    :param job_id: the backend's id of the job. Templated.
    :param conn_id: the Airflow connection of the backend. Templated.
    :param target_states: backend states that count as success (they need not be terminal);
        default: the backend's success.
    :param failure_states: backend states that fail the sensor at once (they need not be
        terminal); every terminal state that is not a target fails it too.
    :param deferrable: wait in the triggerer instead of poking on a worker (default ``True``).
    :param start_from_trigger: start the task directly in the triggerer.
    """

    trigger_class: ClassVar[type[SparkJobTrigger]]
    default_conn_id: ClassVar[str] = ""
    template_fields: Sequence[str] = ("job_id", "conn_id")

    def __init__(
        self,
        *,
        job_id: str,
        conn_id: str | None = None,
        target_states: Collection[str] | None = None,
        failure_states: Collection[str] | None = None,
        deferrable: bool = True,
        start_from_trigger: bool = False,
        backend_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.conn_id = conn_id or self.default_conn_id
        if not self.conn_id:
            raise ConfigurationError(f"{type(self).__name__}: conn_id is required")
        self.target_states = set(target_states) if target_states else None
        self.failure_states = set(failure_states) if failure_states else None
        if self.target_states and self.failure_states and self.target_states & self.failure_states:
            raise ConfigurationError(
                f"states {sorted(self.target_states & self.failure_states)} are both target and failure states"
            )
        self.poll_policy = PollPolicy(interval=seconds(self.poke_interval, "poke_interval") or 60.0)
        self.deferrable = deferrable
        self.backend_options = dict(backend_options or {})
        self.backend_class.validate_options(self.backend_options)
        self.start_from_trigger = start_from_trigger
        if start_from_trigger:
            self.start_trigger_args = StartTriggerArgs(
                trigger_cls=f"{self.trigger_class.__module__}.{self.trigger_class.__qualname__}",
                trigger_kwargs=self.trigger_kwargs(str(self.job_id)),  # rendered by Airflow in the triggerer
                next_method="execute_complete",
                timeout=timedelta(seconds=self.timeout),
            )

    def render_job_id(self, context: Context) -> str:
        """The id of the job to watch, from the rendered arguments; default: ``job_id``. A backend
        whose id is made of several templated arguments (a cluster and a step) builds it here."""
        return str(self.job_id)

    def trigger_kwargs(self, job_id: str, **fields: Any) -> dict[str, Any]:
        """A sensor's trigger only watches — it never cancels the job — and ends the watch at the
        first target or failure state, judged as such."""
        return super().trigger_kwargs(
            job_id,
            owns_job=False,
            target_states=sorted(self.target_states or ()),
            failure_states=sorted(self.failure_states or ()),
            **fields,
        )

    def execute(self, context: Context) -> Any:
        start_links(self, resumed=False)  # the links it shows stay empty, and are not asked for
        if not self.deferrable:
            return super().execute(context)
        job_id = self.render_job_id(context)
        load_connection(self.conn_id)  # fail now, not in the triggerer
        self.defer(
            trigger=self.build_trigger(job_id),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Context) -> bool:
        job_id = self.render_job_id(context)
        conn = load_connection(self.conn_id)
        st = call_backend(self.backend_class, self.conn_id, self.backend_options, lambda b: b.status(job_id), conn=conn)
        self.log.info("Job %s is %s", st.job_id, st.backend_state)
        return self._judge(job_id, st.backend_state, st.state, st.message)

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> Any:
        start_links(self, resumed=True)
        ev = JobEvent.from_payload(event)
        if ev.status is EventStatus.TIMEOUT:
            raise SparkJobFailed(f"waiting on {ev.backend} job {ev.job_id} timed out: {ev.message}")
        if ev.status in (EventStatus.ERROR, EventStatus.UNREACHABLE):
            return self._recheck(context, ev)
        state = JobState(ev.state) if ev.state else JobState.PENDING
        if not self._judge(ev.job_id, ev.backend_state or "", state, ev.message):
            raise SparkJobFailed(f"{ev.backend} job {ev.job_id} stopped in {ev.backend_state}, not a target state")
        return ev.job_id

    def _recheck(self, context: Context, ev: JobEvent) -> Any:
        """The triggerer could not watch the job: poke once from here before failing. The job may
        well be fine (a proxy's 404, an API outage), and then the sensor waits again, backing off
        further each time; only an answer that cannot change fails it."""
        try:
            done = self.poke(context)
        except TransientError as exc:
            self.log.warning("Job %s could not be re-checked (%s); waiting again", ev.job_id, exc)
            done = False
        except BackendError as exc:
            raise SparkJobFailed(f"waiting on {ev.backend} job {ev.job_id} failed: {ev.message}; "
                                 f"re-checked from the worker: {exc}") from exc
        if done:
            return ev.job_id
        if ev.recheck >= self.poll_policy.error_budget and ev.status is EventStatus.ERROR:
            raise SparkJobFailed(f"waiting on {ev.backend} job {ev.job_id} kept failing: {ev.message}")
        self.defer(
            trigger=self.build_trigger(self.render_job_id(context), recheck=ev.recheck + 1),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def _judge(self, job_id: str, backend_state: str, state: JobState, message: str | None) -> bool:
        """True when done, False to keep waiting; raises when the job ended badly."""
        if self.failure_states and backend_state in self.failure_states:
            raise SparkJobFailed(f"job {job_id} is {backend_state}: {message or 'no reason given'}")
        if self.target_states:
            if backend_state in self.target_states:
                return True
        elif state is JobState.SUCCEEDED:
            return True
        if state.is_terminal:
            raise SparkJobFailed(f"job {job_id} ended {backend_state}: {message or 'no reason given'}")
        return False

