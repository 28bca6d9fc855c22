"""Deferrable drop-ins for the official ``DatabricksSubmitRunOperator`` and ``DatabricksRunNowOperator``.

Same class names, same argument names and meanings, same XCom keys (``run_id``,
``run_page_url``) and the same extra link, so a DAG migrates by changing its imports. What the
core adds: the run is watched from the triggerer; a retry reattaches to the earlier try's run
if it still runs and otherwise starts a new one — never reporting the earlier failure as its
own success (official bug #64828); killing or clearing the deferred task cancels the run; the
failure names every failed task with its error; a notebook's ``dbutils.notebook.exit`` value goes
to XCom (``notebook_output``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_spark_async.core.backend import JobStatus
from airflow_spark_async.core.errors import BackendError, ConfigurationError
from airflow_spark_async.core.events import JobEvent
from airflow_spark_async.core.fields import Alias
from airflow_spark_async.core.keys import job_key_from_context
from airflow_spark_async.core.operator import SparkJobOperator
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.databricks.backend import DatabricksBackend
from airflow_spark_async.databricks.hook import DEFAULT_CONN_ID
from airflow_spark_async.databricks.links import DatabricksJobRunLink
from airflow_spark_async.databricks.request import (
    RUN_NOW,
    SUBMIT,
    DatabricksRun,
    attempt_token,
    merge_json,
    run_now_body,
    spark_job_body,
    submit_body,
    task_key_for,
)
from airflow_spark_async.databricks.triggers import DatabricksRunTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["DatabricksRunNowOperator", "DatabricksSubmitRunOperator"]

XCOM_RUN_ID_KEY = "run_id"
XCOM_NOTEBOOK_OUTPUT_KEY = "notebook_output"


def _forwardable_params(context: Context, fallback: Any) -> dict[str, Any]:
    """DAG params with a value, as the official provider forwards them to Databricks."""
    params = context.get("params")
    return {k: v for k, v in dict(params if params is not None else fallback or {}).items() if v is not None}


class _DatabricksOperator(SparkJobOperator):
    """What both Databricks operators share: connection and polling arguments, the per-try
    idempotency token, the official XComs, notebook output and ``wait_for_termination``."""

    trigger_class = DatabricksRunTrigger
    link_classes = (DatabricksJobRunLink,)
    operator_extra_links = (DatabricksJobRunLink(),)
    default_conn_id = DEFAULT_CONN_ID
    template_ext: Sequence[str] = (".json-tpl",)
    ui_color = "#1CB1C2"
    ui_fgcolor = "#fff"

    def __init__(
        self,
        *,
        databricks_conn_id: str = DEFAULT_CONN_ID,
        polling_period_seconds: float = 30,
        databricks_retry_limit: int = 3,
        databricks_retry_delay: float = 1,
        databricks_retry_args: Mapping[str, Any] | None = None,
        wait_for_termination: bool = True,
        durable: bool | None = None,
        openlineage_inject_parent_job_info: bool = False,
        openlineage_inject_transport_info: bool = False,
        backend_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("reattach", True if durable is None else bool(durable))
        kwargs.setdefault("poll_interval", polling_period_seconds)
        options = {"retry_limit": databricks_retry_limit, "retry_delay": databricks_retry_delay,
                   **(backend_options or {})}
        conn_id = kwargs.pop("conn_id", None) or databricks_conn_id  # the core's name wins if both are given
        super().__init__(conn_id=conn_id, backend_options=options, **kwargs)
        self.polling_period_seconds = self.poll_interval
        self.databricks_retry_limit = databricks_retry_limit
        self.databricks_retry_delay = databricks_retry_delay
        self.databricks_retry_args = databricks_retry_args
        self.wait_for_termination = wait_for_termination
        if databricks_retry_args:
            self.log.warning("databricks_retry_args (tenacity arguments) is not supported and is ignored: API calls "
                             "retry databricks_retry_limit times, databricks_retry_delay doubling each time")
        if openlineage_inject_parent_job_info or openlineage_inject_transport_info:
            self.log.warning("OpenLineage injection into Databricks runs is not supported and is ignored")

    #: the official name of the core's ``conn_id`` (templated)
    databricks_conn_id = Alias("conn_id")

    # -- the request ------------------------------------------------------------------------

    def build_request(self, context: Context) -> DatabricksRun:
        """The request of this operator, without this try's token; subclasses build it."""
        raise NotImplementedError

    def build_job(self, context: Context) -> SparkJob:
        """The request with this try's idempotency token and, for reattach, the earlier try's.

        The token is written to the ledger *before* submitting: if the worker dies between the
        API accepting the run and the core recording its id, the next try sends this token
        first and Databricks hands back that very run instead of a duplicate.
        """
        request = self.build_request(context)
        key = job_key_from_context(context)
        token = attempt_token(request.token or key, context["ti"].try_number)
        earlier = None
        if self.reattach and not request.cancel_previous_runs:
            earlier = self.ledger.recall(self._token_key(key), DatabricksBackend.name)
            self.ledger.remember(self._token_key(key), DatabricksBackend.name, token)
        return dataclasses.replace(
            request,
            body={**request.body, "idempotency_token": token},
            earlier_token=earlier if earlier != token else None,
        )

    @staticmethod
    def _token_key(key: str) -> str:
        return f"{key}.token"

    def forget_job(self, context: Context) -> None:
        """The core's clean-up, and this try's idempotency token with it."""
        super().forget_job(context)
        self.ledger.forget(self._token_key(job_key_from_context(context)))

    # -- the worker's part --------------------------------------------------------------------

    @property
    def waits(self) -> bool:
        return bool(self.wait_for_termination)

    def after_submit(self, context: Context, status: JobStatus) -> None:
        # The official XCom: the run id as an integer, pushed before deferring.
        if self.do_xcom_push:
            context["ti"].xcom_push(key=XCOM_RUN_ID_KEY, value=int(status.job_id))

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> Any:
        result = super().execute_complete(context, event)
        ev = JobEvent.from_payload(event)
        if ev.backend_state == "SUCCESS_WITH_FAILURES":
            self.log.warning("Run %s succeeded with failures: %s", ev.job_id, ev.message)
        return result

    def result(self, context: Context, job_id: str) -> Any:
        # Here, not in execute_complete: the core calls this once per successful run, also when the
        # outcome came through a re-check (which resumes through execute_complete a second time).
        if self.waits:  # the run has ended, so its notebooks' exit values exist
            self._push_notebook_output(context, job_id)
        return super().result(context, job_id)

    def _push_notebook_output(self, context: Context, run_id: str) -> None:
        """``dbutils.notebook.exit`` values to XCom ``notebook_output``: the value itself for one
        notebook task, a ``{task_key: value}`` dict for several."""
        if not self.do_xcom_push:
            return
        try:
            results = self.backend_call(lambda backend: backend.notebook_outputs(run_id))  # type: ignore[attr-defined]
        except BackendError as exc:
            self.log.warning("Could not read the notebook output of run %s: %s", run_id, exc)
            return
        if results:
            value: Any = next(iter(results.values())) if len(results) == 1 else results
            context["ti"].xcom_push(key=XCOM_NOTEBOOK_OUTPUT_KEY, value=value)


class DatabricksSubmitRunOperator(_DatabricksOperator):
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

    template_fields: Sequence[str] = (
        "json", "tasks", "spark_jar_task", "notebook_task", "spark_python_task", "spark_submit_task",
        "pipeline_task", "dbt_task", "new_cluster", "existing_cluster_id", "libraries", "environments",
        "run_name", "timeout_seconds", "idempotency_token", "access_control_list", "git_source",
        "performance_target", "databricks_conn_id", "job",
    )
    #: the named arguments merged over ``json``
    NAMED = (
        "tasks", "spark_jar_task", "notebook_task", "spark_python_task", "spark_submit_task", "pipeline_task",
        "dbt_task", "new_cluster", "existing_cluster_id", "libraries", "environments", "run_name",
        "timeout_seconds", "idempotency_token", "access_control_list", "git_source", "performance_target",
    )
    #: the named arguments that say what runs — not allowed next to ``job``
    _WORKLOAD = ("tasks", "spark_jar_task", "notebook_task", "spark_python_task", "spark_submit_task",
                 "pipeline_task", "dbt_task")

    def __init__(
        self,
        *,
        json: Any | None = None,
        tasks: list[Any] | None = None,
        spark_jar_task: dict[str, Any] | None = None,
        notebook_task: dict[str, Any] | None = None,
        spark_python_task: dict[str, Any] | None = None,
        spark_submit_task: dict[str, Any] | None = None,
        pipeline_task: dict[str, Any] | None = None,
        dbt_task: dict[str, Any] | None = None,
        new_cluster: dict[str, Any] | None = None,
        existing_cluster_id: str | None = None,
        libraries: list[dict[str, Any]] | None = None,
        environments: list[dict[str, Any]] | None = None,
        run_name: str | None = None,
        timeout_seconds: int | None = None,
        idempotency_token: str | None = None,
        access_control_list: list[dict[str, str]] | None = None,
        git_source: dict[str, Any] | None = None,
        performance_target: str | None = None,
        job: SparkJob | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(job=job, **kwargs)
        self.json = json
        self.tasks = tasks
        self.spark_jar_task = spark_jar_task
        self.notebook_task = notebook_task
        self.spark_python_task = spark_python_task
        self.spark_submit_task = spark_submit_task
        self.pipeline_task = pipeline_task
        self.dbt_task = dbt_task
        self.new_cluster = new_cluster
        self.existing_cluster_id = existing_cluster_id
        self.libraries = libraries
        self.environments = environments
        self.run_name = run_name
        self.timeout_seconds = timeout_seconds
        self.idempotency_token = idempotency_token
        self.access_control_list = access_control_list
        self.git_source = git_source
        self.performance_target = performance_target
        if self.job is not None:
            clash = [name for name in self._WORKLOAD if getattr(self, name) is not None]
            if clash or json is not None:
                raise ConfigurationError(
                    f"{type(self).__name__}: give job (a SparkJob) or the Databricks task arguments, not both "
                    f"(got job and {clash or ['json']})"
                )

    def build_request(self, context: Context) -> DatabricksRun:
        if self.job is not None:
            return self._spark_job_request(context)
        merged = merge_json(self.json, {name: getattr(self, name) for name in self.NAMED})
        body = submit_body(merged, task_id=self.task_id, params=_forwardable_params(context, self.params))
        return DatabricksRun(endpoint=SUBMIT, body=body, name=body.get("run_name"))

    def _spark_job_request(self, context: Context) -> DatabricksRun:
        job = SparkJobOperator.build_job(self, context)  # the core's: re-validated after templating, named
        body = spark_job_body(
            job,
            task_key=task_key_for(self.task_id),
            new_cluster=self.new_cluster,
            existing_cluster_id=self.existing_cluster_id,
            libraries=self.libraries,
        )
        run_level = ("run_name", "timeout_seconds", "idempotency_token", "access_control_list", "git_source",
                     "environments", "performance_target")
        body.update({name: getattr(self, name) for name in run_level if getattr(self, name) is not None})
        body = merge_json(body, {})  # the same JSON-safety check as the official path
        return DatabricksRun(endpoint=SUBMIT, body=body, name=body.get("run_name"))


class DatabricksRunNowOperator(_DatabricksOperator):
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

    template_fields: Sequence[str] = (
        "json", "job_id", "job_name", "job_parameters", "dbt_commands", "notebook_params", "python_params",
        "python_named_params", "jar_params", "spark_submit_params", "idempotency_token", "performance_target",
        "databricks_conn_id",
    )
    NAMED = (
        "job_id", "job_name", "job_parameters", "dbt_commands", "notebook_params", "python_params",
        "python_named_params", "jar_params", "spark_submit_params", "idempotency_token", "performance_target",
    )

    def __init__(
        self,
        *,
        job_id: int | str | None = None,
        job_name: str | None = None,
        job_parameters: dict[str, Any] | None = None,
        json: Any | None = None,
        dbt_commands: list[str] | None = None,
        notebook_params: dict[str, Any] | None = None,
        python_params: list[str] | None = None,
        jar_params: list[str] | None = None,
        spark_submit_params: list[str] | None = None,
        python_named_params: dict[str, Any] | None = None,
        idempotency_token: str | None = None,
        performance_target: str | None = None,
        repair_run: bool = False,
        databricks_repair_reason_new_settings: dict[str, Any] | None = None,
        cancel_previous_runs: bool = False,
        forward_dag_params: bool = True,
        **kwargs: Any,
    ) -> None:
        if repair_run or databricks_repair_reason_new_settings:
            raise ConfigurationError(
                "repair_run is not supported by airflow-spark-async's DatabricksRunNowOperator: a failed run fails "
                "the task and a retry starts a new run (see docs/databricks.md)"
            )
        super().__init__(**kwargs)
        self.json = json
        self.job_id = job_id
        self.job_name = job_name
        self.job_parameters = job_parameters
        self.dbt_commands = dbt_commands
        self.notebook_params = notebook_params
        self.python_params = python_params
        self.jar_params = jar_params
        self.spark_submit_params = spark_submit_params
        self.python_named_params = python_named_params
        self.idempotency_token = idempotency_token
        self.performance_target = performance_target
        self.repair_run = repair_run
        self.cancel_previous_runs = cancel_previous_runs
        self.forward_dag_params = forward_dag_params

    def build_request(self, context: Context) -> DatabricksRun:
        merged = merge_json(self.json, {name: getattr(self, name) for name in self.NAMED})
        body = run_now_body(merged, params=_forwardable_params(context, self.params),
                            forward_dag_params=self.forward_dag_params)
        return DatabricksRun(endpoint=RUN_NOW, body=body, name=self.task_id,
                             cancel_previous_runs=self.cancel_previous_runs)
