"""``LivyBatchSensor``: the official ``LivySensor``'s arguments, waiting in the triggerer."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.sensor import SparkJobSensor
from airflow_spark_async.livy.backend import BATCH_STATES
from airflow_spark_async.livy.hook import DEFAULT_CONN_ID, LivyOptions, resolve_conn_id
from airflow_spark_async.livy.triggers import LivyBatchTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["LIVY_TERMINAL_STATES", "LivyBatchSensor"]

#: The official ``LivyHook.TERMINAL_STATES``, by name.
LIVY_TERMINAL_STATES = tuple(sorted(state for state, ours in BATCH_STATES.items() if ours.is_terminal))


class LivyBatchSensor(SparkJobSensor):
    """Wait until a Livy batch ends — a drop-in, deferrable ``LivySensor``.

    :param batch_id: the batch to watch. (templated)
    :param livy_conn_id: the Livy connection (default ``livy_default``); ``conn_id`` is a synonym.
    :param livy_conn_auth_type, extra_options, endpoint_prefix: as in the official sensor; honoured
        in the triggerer too.
    :param target_states: Livy states that end the wait successfully. Default: every terminal state
        (``success``, ``dead``, ``killed``, ``error``), which is what the official sensor does — it
        watches for *termination*. Pass ``["success"]`` to fail the sensor when the batch fails.
    :param failure_states: Livy states that fail the sensor at once.
    :param deferrable: wait in the triggerer (default ``True``); ``False`` pokes like the official one.

    A batch Livy no longer knows (404: deleted, collected, or Livy restarted without recovery) fails
    the sensor with that explanation instead of poking forever. The sensor never deletes the batch.
    """

    trigger_class = LivyBatchTrigger
    default_conn_id = DEFAULT_CONN_ID
    template_fields: Sequence[str] = ("batch_id", "conn_id")

    def __init__(
        self,
        *,
        batch_id: int | str,
        livy_conn_id: str | None = None,
        livy_conn_auth_type: Any | None = None,
        extra_options: dict[str, Any] | None = None,
        endpoint_prefix: str | None = None,
        target_states: Collection[str] | None = None,
        failure_states: Collection[str] | None = None,
        conn_id: str | None = None,
        backend_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        conn_id = resolve_conn_id(conn_id, livy_conn_id, "LivyBatchSensor")
        for states, what in ((target_states, "target_states"), (failure_states, "failure_states")):
            unknown = sorted(set(states or ()) - set(BATCH_STATES))
            if unknown:
                raise ConfigurationError(f"LivyBatchSensor {what}: unknown Livy state(s) {unknown}; known: "
                                         f"{sorted(BATCH_STATES)}")
        self.batch_id = batch_id
        super().__init__(
            job_id=batch_id,  # type: ignore[arg-type]  # kept as given: it may be a template or XComArg
            conn_id=conn_id,
            target_states=target_states or [s for s in LIVY_TERMINAL_STATES if s not in (failure_states or ())],
            failure_states=failure_states,
            backend_options=LivyOptions.merge_official(
                backend_options,
                endpoint_prefix=endpoint_prefix,
                auth_type=livy_conn_auth_type,
                extra_options=extra_options,
            ),
            **kwargs,
        )

    def execute(self, context: Context) -> Any:
        if not str(self.batch_id).strip().isdigit():  # rendered by now: fail before deferring
            raise ConfigurationError(f"LivyBatchSensor {self.task_id}: batch_id must be a Livy batch id (an "
                                     f"integer), got {self.batch_id!r}")
        return super().execute(context)

    # ``batch_id`` is the templated field (as in the official sensor); the core reads ``job_id``.
    @property
    def job_id(self) -> str:
        return str(self.batch_id)

    @job_id.setter
    def job_id(self, value: str) -> None:
        self.batch_id = value
