"""EMR steps' operators and sensor: add steps to a cluster and wait for them, or watch one.

:class:`EmrStepsOperator` is the core-style operator (a :class:`SparkJob` or raw StepConfigs,
always waits, returns the job id ``j-CLUSTER:s-STEP,…``); :class:`EmrAddStepsOperator` and
:class:`EmrStepSensor` are the official provider's twins (see :mod:`airflow_spark_async.emr.operators`
for what changes underneath). Import them from ``emr.operators`` / ``emr.sensors``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_spark_async.core.backend import Backend
from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.emr.clusters import cluster_id_by_name
from airflow_spark_async.emr.compat import (
    AWS_TEMPLATE_FIELDS,
    official_waiter,
    parse_steps,
)
from airflow_spark_async.emr.ids import StepsRef
from airflow_spark_async.emr.links import EmrClusterLink, EmrLogsLink
from airflow_spark_async.emr.spark import check_step_options, spark_step
from airflow_spark_async.emr.steps import StepsRequest
from airflow_spark_async.emr.tasks import EmrJobOperator, EmrSensor
from airflow_spark_async.emr.triggers import EmrStepsTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["STEP_FAILED_STATES", "EmrAddStepsOperator", "EmrStepSensor", "EmrStepsOperator"]

STEP_FAILED_STATES = ("CANCELLED", "FAILED", "INTERRUPTED")


class EmrStepsOperator(EmrJobOperator):
    """Add steps to an EMR cluster — a :class:`SparkJob` run with spark-submit, or raw steps —
    and wait (deferred) until every one of them ended; returns the job id
    (``j-CLUSTER:s-STEP,…``). :class:`EmrAddStepsOperator` is the same with the official
    operator's waiting rules and return value.

    :param job_flow_id: the cluster; or ``job_flow_name`` (+ ``cluster_states``) to look it up.
    :param steps: ``AddJobFlowSteps`` StepConfigs (a list, a JSON/Python string, or a ``.json``
        file), or
    :param job: a :class:`SparkJob` run with spark-submit through command-runner.jar.
    :param execution_role_arn: the steps' runtime role.
    :param action_on_failure: the step's ``ActionOnFailure`` for ``job`` (default ``CONTINUE``:
        a failing job does not take a shared cluster down).
    :param deploy_mode: ``cluster`` (default; the driver runs in YARN) or ``client``.
    :param aws_conn_id: the Airflow ``aws`` connection (``conn_id`` is an alias);
        ``region_name``, ``verify``, ``botocore_config`` override it.
    :param poll_interval: seconds between polls (default 30).

    See :class:`~airflow_spark_async.core.operator.SparkJobOperator` for ``job_timeout``,
    ``deferrable``, ``poll_policy``, ``reattach`` and ``log_tail_lines``.
    """

    trigger_class = EmrStepsTrigger
    link_classes = (EmrClusterLink, EmrLogsLink)
    operator_extra_links = (EmrClusterLink(), EmrLogsLink())
    template_fields: Sequence[str] = (
        "job", "job_flow_id", "job_flow_name", "cluster_states", "steps", "execution_role_arn", *AWS_TEMPLATE_FIELDS,
    )
    template_ext: Sequence[str] = (".json",)
    template_fields_renderers = {"steps": "json"}

    def __init__(self, *, job_flow_id: str | None = None, job_flow_name: str | None = None,
                 cluster_states: list[str] | None = None, steps: list[dict[str, Any]] | str | None = None,
                 job: SparkJob | Mapping[str, Any] | None = None, execution_role_arn: str | None = None,
                 action_on_failure: str = "CONTINUE", deploy_mode: str = "cluster", poll_interval: float = 30.0,
                 **kwargs: Any) -> None:
        if (job_flow_id is None) == (job_flow_name is None):
            raise ConfigurationError(f"{type(self).__name__}: give exactly one of job_flow_id and job_flow_name")
        if (job is None) == (not steps):
            raise ConfigurationError(f"{type(self).__name__}: give either steps (raw StepConfigs) or job (a SparkJob)")
        check_step_options(action_on_failure=action_on_failure, deploy_mode=deploy_mode)
        self.cluster_id: str | None = None  # resolved in execute (job_flow_name needs the API)
        super().__init__(job=job, poll_interval=poll_interval, **kwargs)
        self.job_flow_id = job_flow_id
        self.job_flow_name = job_flow_name
        self.cluster_states = cluster_states or []
        self.steps = steps or []
        self.execution_role_arn = execution_role_arn
        self.action_on_failure = action_on_failure
        self.deploy_mode = deploy_mode

    def watch_options(self) -> dict[str, Any]:
        return {"cluster_id": self.cluster_id} if self.cluster_id else {}

    def execute(self, context: Context) -> Any:
        self.cluster_id = self.job_flow_id or self.backend_call(self._cluster_by_name)
        if self.do_xcom_push:
            context["ti"].xcom_push(key="job_flow_id", value=self.cluster_id)
        return super().execute(context)

    async def _cluster_by_name(self, backend: Backend) -> str:
        return await cluster_id_by_name(backend, str(self.job_flow_name), self.cluster_states)  # type: ignore[arg-type]

    def build_request(self, context: Context, key: str, attempt: int) -> StepsRequest:
        if self.job is None:
            steps = parse_steps(self.steps)
        else:
            job = super().build_job(context)
            steps = [spark_step(job, action_on_failure=self.action_on_failure, deploy_mode=self.deploy_mode)]
        return StepsRequest(self.cluster_id, tuple(steps), self.execution_role_arn or None)


class EmrAddStepsOperator(EmrStepsOperator):
    """Drop-in twin of the official ``EmrAddStepsOperator``: its arguments, its waiting rules
    (wait when ``deferrable`` or ``wait_for_completion``) and its return value (the step ids),
    on top of :class:`EmrStepsOperator` — so ``job=SparkJob(...)`` works here too.

    ``waiter_delay`` is the poll interval (default 30); ``waiter_delay * waiter_max_attempts``,
    when ``waiter_max_attempts`` is given, is the deadline after which the steps are cancelled.
    The step sensor of an official DAG keeps working: a step that already ended satisfies it.
    """

    def __init__(self, *, wait_for_completion: bool = False, **kwargs: Any) -> None:
        super().__init__(**official_waiter(kwargs, 30.0))
        self.wait_for_completion = wait_for_completion
        self.wait_for_termination = bool(self.deferrable or wait_for_completion)

    def result(self, context: Context, job_id: str) -> list[str]:
        return list(StepsRef.parse(job_id).step_ids)


class EmrStepSensor(EmrSensor):
    """Wait for a step of an EMR cluster (official ``EmrStepSensor`` arguments: ``job_flow_id``,
    ``step_id``, ``target_states`` default ``COMPLETED``, ``failed_states`` default
    ``CANCELLED``/``FAILED``/``INTERRUPTED``, ``max_attempts``, ``deferrable``)."""

    trigger_class = EmrStepsTrigger
    template_fields: Sequence[str] = ("job_flow_id", "step_id", "target_states", "failure_states",
                                      *AWS_TEMPLATE_FIELDS)
    operator_extra_links = (EmrClusterLink(), EmrLogsLink())

    def __init__(self, *, job_flow_id: str, step_id: str, target_states: Collection[str] | None = None,
                 failed_states: Collection[str] | None = None, **kwargs: Any) -> None:
        self.job_flow_id = job_flow_id
        self.step_id = step_id
        super().__init__(target_states=target_states or ["COMPLETED"],
                         failed_states=failed_states or list(STEP_FAILED_STATES), **kwargs)

    def render_job_id(self, context: Context | None = None) -> str:
        return str(StepsRef(str(self.job_flow_id), (str(self.step_id),)))
