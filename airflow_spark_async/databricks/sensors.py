"""A deferrable sensor on an existing Databricks run — one started by another DAG, a schedule in
Databricks, or a ``wait_for_termination=False`` operator."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from airflow_spark_async.core.fields import Alias
from airflow_spark_async.core.sensor import SparkJobSensor
from airflow_spark_async.databricks.hook import DEFAULT_CONN_ID
from airflow_spark_async.databricks.triggers import DatabricksRunTrigger

__all__ = ["DatabricksRunSensor"]


class DatabricksRunSensor(SparkJobSensor):
    """Wait until a Databricks run ends; succeed if it ended in a target state.

    :param run_id: the run to wait for (templated), e.g.
        ``"{{ ti.xcom_pull(task_ids='start', key='run_id') }}"``.
    :param databricks_conn_id: the ``databricks`` connection (templated).
    :param target_states: states that count as success, in the Jobs API's words: the result
        state once the run ended (``SUCCESS``, ``SUCCESS_WITH_FAILURES``, ``FAILED``,
        ``CANCELED``, ``TIMEDOUT`` …) or the life cycle state before (``RUNNING`` — to wait
        until a run has started). Default: ``SUCCESS`` and ``SUCCESS_WITH_FAILURES``.
    :param failure_states: states that fail the sensor at once; default: every other end.
    :param deferrable: wait in the triggerer (default); ``poke_interval`` is the poll interval.

    The sensor never cancels the run it watches, and its ``timeout`` fails the sensor only.
    """

    trigger_class = DatabricksRunTrigger
    default_conn_id = DEFAULT_CONN_ID
    template_fields: Sequence[str] = ("run_id", "databricks_conn_id")
    ui_color = "#1CB1C2"
    ui_fgcolor = "#fff"

    def __init__(
        self,
        *,
        run_id: int | str,
        databricks_conn_id: str = DEFAULT_CONN_ID,
        target_states: Collection[str] | None = None,
        failure_states: Collection[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            job_id=str(run_id),
            conn_id=databricks_conn_id,
            target_states=target_states,
            failure_states=failure_states,
            **kwargs,
        )

    # The core names them job_id/conn_id; these names are the templated ones users know.
    @property
    def run_id(self) -> str:
        return self.job_id

    @run_id.setter
    def run_id(self, value: Any) -> None:
        self.job_id = str(value)

    databricks_conn_id = Alias("conn_id")
