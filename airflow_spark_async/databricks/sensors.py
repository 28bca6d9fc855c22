"""A deferrable sensor on an existing Databricks run — one started by another DAG, a schedule in
Databricks, or a ``wait_for_termination=False`` operator."""

from __future__ import annotations

from airflow_spark_async.core.sensor import SparkJobSensor
from airflow_spark_async.databricks.compat.arguments import OfficialSensorArguments
from airflow_spark_async.databricks.hook import DEFAULT_CONN_ID
from airflow_spark_async.databricks.triggers import DatabricksRunTrigger

__all__ = ["DatabricksRunSensor"]


class DatabricksRunSensor(OfficialSensorArguments, SparkJobSensor):
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
    ui_color = "#1CB1C2"
    ui_fgcolor = "#fff"
