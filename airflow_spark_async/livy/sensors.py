"""``LivyBatchSensor``: the official ``LivySensor``'s arguments (see :mod:`.compat`), waiting in the
triggerer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.livy.backend import BATCH_STATES
from airflow_spark_async.livy.compat import OfficialSensorArguments
from airflow_spark_async.livy.triggers import LivyBatchTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["LIVY_TERMINAL_STATES", "LivyBatchSensor"]

#: The official ``LivyHook.TERMINAL_STATES``, by name.
LIVY_TERMINAL_STATES = tuple(sorted(state for state, ours in BATCH_STATES.items() if ours.is_terminal))


class LivyBatchSensor(OfficialSensorArguments):
    """Wait until a Livy batch ends — a drop-in, deferrable ``LivySensor``.

    By default it succeeds on every terminal state (``success``, ``dead``, ``killed``, ``error``), as the
    official sensor does; ``target_states=["success"]`` fails it when the batch fails, ``failure_states``
    fail it at once. A batch Livy no longer knows fails it with that explanation instead of poking
    forever. It never deletes the batch.
    """

    trigger_class = LivyBatchTrigger
    known_states = tuple(BATCH_STATES)
    terminal_states = LIVY_TERMINAL_STATES

    def render_job_id(self, context: Context) -> str:
        """The rendered ``batch_id``, which must be an integer: fail before deferring, not in the triggerer."""
        if not str(self.batch_id).strip().isdigit():
            raise ConfigurationError(f"LivyBatchSensor {self.task_id}: batch_id must be a Livy batch id (an "
                                     f"integer), got {self.batch_id!r}")
        return str(self.batch_id).strip()
