"""Deferrable drop-ins for the official ``DatabricksSubmitRunOperator`` and ``DatabricksRunNowOperator``.

Same class names, argument names (:mod:`~airflow_spark_async.databricks.compat`), XCom keys
(``run_id``, ``run_page_url``) and extra link, so a DAG migrates by changing its imports. What is
Databricks' own here: the per-try idempotency token (a retry never gets the earlier try's failed
run back, official bug #64828) kept in the ledger so that a run submitted by a worker that died
before recording it is reattached; the run id as an integer XCom; and a notebook's
``dbutils.notebook.exit`` value in XCom ``notebook_output``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from airflow_spark_async.core.backend import JobStatus, job_key_from_context
from airflow_spark_async.core.errors import BackendError
from airflow_spark_async.core.operator import SparkJobOperator
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.core.trigger import JobEvent
from airflow_spark_async.databricks.compat.arguments import RunNowArguments, SubmitRunArguments
from airflow_spark_async.databricks.hook import DEFAULT_CONN_ID
from airflow_spark_async.databricks.links import DatabricksJobRunLink
from airflow_spark_async.databricks.request import DatabricksRun, attempt_token
from airflow_spark_async.databricks.triggers import DatabricksRunTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["DatabricksRunNowOperator", "DatabricksSubmitRunOperator"]

XCOM_RUN_ID_KEY = "run_id"
XCOM_NOTEBOOK_OUTPUT_KEY = "notebook_output"


class _DatabricksOperator(SparkJobOperator[DatabricksRun]):
    """What both operators share beyond their official arguments."""

    trigger_class = DatabricksRunTrigger
    link_classes = (DatabricksJobRunLink,)
    operator_extra_links = (DatabricksJobRunLink(),)
    default_conn_id = DEFAULT_CONN_ID
    ui_color = "#1CB1C2"
    ui_fgcolor = "#fff"

    def run_request(self, context: Context, job: SparkJob | None) -> DatabricksRun:
        """The request of the rendered arguments, without this try's token (see ``compat``)."""
        raise NotImplementedError

    def build_request(self, context: Context, key: str, attempt: int) -> DatabricksRun:
        """The request with this try's idempotency token and, for reattach, the earlier try's.

        The token is written to the ledger *before* submitting: if the worker dies between the
        API accepting the run and the core recording its id, the next try sends this token
        first and Databricks hands back that very run instead of a duplicate.
        """
        request = self.run_request(context, self.build_job(context) if self.job is not None else None)
        token = attempt_token(request.token or key, attempt)
        earlier = None
        if self.reattach and not request.cancel_previous_runs:
            earlier = self.ledger.recall(f"{key}.token", self.backend_class.name)
            self.ledger.remember(f"{key}.token", self.backend_class.name, token)
        return dataclasses.replace(request, body={**request.body, "idempotency_token": token},
                                   earlier_token=earlier if earlier != token else None)

    def forget_job(self, context: Context) -> None:
        """The core's clean-up, and this try's idempotency token with it."""
        super().forget_job(context)
        self.ledger.forget(f"{job_key_from_context(context)}.token")

    def after_submit(self, context: Context, status: JobStatus) -> None:
        if self.do_xcom_push:  # the official XCom: the run id as an integer, pushed before deferring
            context["ti"].xcom_push(key=XCOM_RUN_ID_KEY, value=int(status.job_id))

    def on_complete(self, context: Context, event: JobEvent) -> Any:
        """Once per successful run (also after a re-check): its notebooks' exit values exist now."""
        if event.backend_state == "SUCCESS_WITH_FAILURES":
            self.log.warning("Run %s succeeded with failures: %s", event.job_id, event.message)
        if self.do_xcom_push:
            try:
                results = self.backend_call(lambda backend: backend.notebook_outputs(event.job_id))  # type: ignore[attr-defined]
            except BackendError as exc:
                self.log.warning("Could not read the notebook output of run %s: %s", event.job_id, exc)
            else:  # the value itself for one notebook task, a {task_key: value} dict for several
                if results:
                    value = next(iter(results.values())) if len(results) == 1 else results
                    context["ti"].xcom_push(key=XCOM_NOTEBOOK_OUTPUT_KEY, value=value)
        return super().on_complete(context, event)


class DatabricksSubmitRunOperator(SubmitRunArguments, _DatabricksOperator):
    """Submit a one-time run (``runs/submit``), free the worker while it runs, and end with it.

    Takes the official operator's arguments — ``json`` merged with the named ones (named win):
    ``tasks``, ``spark_jar_task``, ``notebook_task``, ``spark_python_task``, ``spark_submit_task``,
    ``pipeline_task``, ``dbt_task``, ``new_cluster``, ``existing_cluster_id``, ``libraries``,
    ``environments``, ``run_name`` (default: the task id), ``timeout_seconds``, ``idempotency_token``,
    ``access_control_list``, ``git_source``, ``performance_target``; and ``databricks_conn_id``,
    ``polling_period_seconds``, ``databricks_retry_limit``, ``databricks_retry_delay``,
    ``wait_for_termination``, ``do_xcom_push``, ``deferrable``, ``durable``.

    Or the portable spec: ``job=SparkJob(...)`` with ``new_cluster`` or ``existing_cluster_id``
    runs as a ``spark_python_task`` (a ``spark_jar_task`` if ``main_class`` is set).

    Plus the core's ``job_timeout`` (the trigger's own deadline; the run is cancelled when it
    passes), ``poll_policy`` and ``log_tail_lines``. See docs/databricks.md.
    """


class DatabricksRunNowOperator(RunNowArguments, _DatabricksOperator):
    """Run an existing Databricks job (``run-now``), free the worker while it runs, end with it.

    Takes the official operator's arguments — ``json`` merged with the named ones (named win):
    ``job_id`` or ``job_name`` (resolved through ``jobs/list``; exactly one job may have it),
    ``job_parameters``, ``notebook_params``, ``python_params``, ``python_named_params``,
    ``jar_params``, ``spark_submit_params``, ``dbt_commands``, ``idempotency_token``,
    ``performance_target``, ``cancel_previous_runs``, ``forward_dag_params``; and the connection,
    polling and retry arguments of :class:`DatabricksSubmitRunOperator`.

    ``repair_run`` and ``databricks_repair_reason_new_settings`` are not supported (see
    docs/databricks.md): passing them fails at parse time rather than silently not repairing.
    """
