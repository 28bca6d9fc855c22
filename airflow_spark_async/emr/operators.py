"""Deferrable EMR operators: core-style ones, and twins of the official amazon provider's.

Two families share one implementation:

* :class:`EmrStepsOperator` and :class:`EmrServerlessJobOperator` behave like every operator of
  this package — they always wait for the job (``deferrable`` chooses triggerer or worker) and
  return the job id — and take a portable :class:`SparkJob` or the raw AWS request.
* :class:`EmrAddStepsOperator`, :class:`EmrServerlessStartJobOperator`,
  :class:`EmrCreateJobFlowOperator` and :class:`EmrTerminateJobFlowOperator` take the official
  operators' arguments, wait when they would, and return what they return, so a DAG written for
  ``airflow.providers.amazon.aws.operators.emr`` runs with only its imports changed (docs/emr.md
  lists the few differences).

What changes underneath, for both:

* **The worker is free while AWS works** (``deferrable=True``): the core's trigger watches from
  the triggerer, coalescing the polls of every step of a cluster into ``ListSteps`` calls.
* **Nothing is submitted twice.** A retry finds the steps / job run / cluster of its earlier try
  (by the key in the step or run name, or the key tag of a cluster) and watches it.
* **Nothing is left running.** Killing, marking failed, clearing or timing out the task cancels
  what it started: ``CancelSteps`` (``SEND_INTERRUPT``) for steps, ``CancelJobRun`` for
  Serverless, ``TerminateJobFlows`` for a cluster it created.
* **Failure explains itself**: the step's ``FailureDetails`` or the run's ``stateDetails``, the
  cluster's state-change reason, and the log tail from S3 when it is there.

For the twins, ``waiter_delay`` is the poll interval, and ``waiter_delay * waiter_max_attempts``,
when given, the deadline after which the job is cancelled (the official triggers give up at that
point but leave the job running).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from airflow.sdk import BaseOperator

from airflow_spark_async.core.backend import Backend, JobStatus
from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.events import EventStatus, JobEvent
from airflow_spark_async.core.links import push_links
from airflow_spark_async.core.operator import SparkJobFailed, SparkJobOperator, default_deferrable, seconds
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.core.sync import call_backend
from airflow_spark_async.emr.clusters import EmrClusterBackend, JobFlowRequest, cluster_id_by_name, cluster_links
from airflow_spark_async.emr.compat import (
    AWS_TEMPLATE_FIELDS,
    WAIT_POLICY_STATES,
    AwsArgs,
    WaitPolicy,
    job_flow_config,
    official_waiter,
    parse_steps,
    parse_wait_policy,
    waiter_timeout,
)
from airflow_spark_async.emr.ids import JobRunRef, StepsRef
from airflow_spark_async.emr.links import (
    EmrClusterLink,
    EmrLogsLink,
    EmrServerlessDashboardLink,
    EmrServerlessLogsLink,
)
from airflow_spark_async.emr.serverless import JobRunRequest, serverless_token
from airflow_spark_async.emr.spark import check_step_options, spark_step, spark_submit_driver
from airflow_spark_async.emr.steps import StepsRequest
from airflow_spark_async.emr.triggers import EmrClusterTrigger, EmrServerlessJobTrigger, EmrStepsTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "AwsArgs",
    "EmrAddStepsOperator",
    "EmrCreateJobFlowOperator",
    "EmrServerlessJobOperator",
    "EmrServerlessStartJobOperator",
    "EmrStepsOperator",
    "EmrTerminateJobFlowOperator",
    "WaitPolicy",
]

#: the AWS arguments every EMR operator takes (see :class:`~airflow_spark_async.emr.compat.AwsArgs`)
AWS_ARGS = ("aws_conn_id", "conn_id", "region_name", "verify", "botocore_config")


def _aws(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the AWS arguments out of ``kwargs`` (the rest go to the core operator)."""
    return {name: kwargs.pop(name) for name in AWS_ARGS if name in kwargs}


class _EmrJobOperator(AwsArgs, SparkJobOperator):
    """The core operator with the AWS arguments. Like every core operator it waits for the job
    (``deferrable`` chooses where) and returns the job id; the official twins below set the
    core's :attr:`waits` and :meth:`result` to behave as the amazon provider's operators do."""

    default_conn_id: ClassVar[str] = "aws_default"
    ui_color = "#f9c915"

    def __init__(self, *, aws_conn_id: str | None = "aws_default", **kwargs: Any) -> None:
        aws = _aws(kwargs)
        conn_id = self.init_aws(aws_conn_id, **aws)
        super().__init__(conn_id=conn_id, **kwargs)


class EmrStepsOperator(_EmrJobOperator):
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


class EmrCreateJobFlowOperator(_EmrJobOperator):
    """Create an EMR cluster and, when asked, wait (deferred) until it is ready.

    The official arguments: ``emr_conn_id`` (its extra is the base ``RunJobFlow`` request; a
    missing connection means an empty one), ``job_flow_overrides``, ``wait_for_completion`` /
    ``wait_policy`` (``wait_for_completion``: until ``WAITING``/``RUNNING``;
    ``wait_for_steps_completion``: until ``TERMINATED``), ``waiter_delay``,
    ``waiter_max_attempts``, ``deferrable``, ``terminate_job_flow_on_failure``, and the AWS ones.
    Returns the cluster id.

    Killing the task, or its deadline passing, terminates the cluster (as the official
    ``on_kill`` does). A retry reattaches to the cluster of an earlier try that still runs.
    """

    trigger_class = EmrClusterTrigger
    link_classes = (EmrClusterLink, EmrLogsLink)
    operator_extra_links = (EmrClusterLink(), EmrLogsLink())
    template_fields: Sequence[str] = ("job_flow_overrides", "emr_conn_id", *AWS_TEMPLATE_FIELDS)
    template_ext: Sequence[str] = (".json",)
    template_fields_renderers = {"job_flow_overrides": "json"}

    def __init__(self, *, emr_conn_id: str | None = "emr_default",
                 job_flow_overrides: str | dict[str, Any] | None = None, wait_for_completion: bool | None = None,
                 wait_policy: str | None = None, terminate_job_flow_on_failure: bool = True, **kwargs: Any) -> None:
        self.wait_policy = parse_wait_policy(wait_policy, wait_for_completion)
        super().__init__(wait_for_termination=self.wait_policy is not None, **official_waiter(kwargs, 60.0))
        self.emr_conn_id = emr_conn_id
        self.job_flow_overrides = job_flow_overrides or {}
        self.wait_for_completion = self.wait_policy is not None
        self.terminate_job_flow_on_failure = terminate_job_flow_on_failure

    def watch_options(self) -> dict[str, Any]:
        return {"stop_states": list(WAIT_POLICY_STATES[self.wait_policy])} if self.wait_policy else {}

    def build_request(self, context: Context, key: str, attempt: int) -> JobFlowRequest:
        return JobFlowRequest(job_flow_config(self.emr_conn_id, self.job_flow_overrides, self.log))

    def on_failure(self, context: Context, event: JobEvent) -> NoReturn:
        """Terminate a cluster that failed without ending (``terminate_job_flow_on_failure``)."""
        if self.terminate_job_flow_on_failure and event.backend_state not in ("TERMINATED", "TERMINATED_WITH_ERRORS"):
            self.log.warning("Terminating cluster %s after the failure", event.job_id)
            self.cancel_job(event.job_id, event.key)
        super().on_failure(context, event)


class EmrTerminateJobFlowOperator(AwsArgs, BaseOperator):
    """Terminate an EMR cluster and, with ``deferrable=True``, wait in the triggerer until it has.

    The official arguments: ``job_flow_id``, ``waiter_delay`` (60), ``waiter_max_attempts`` (20),
    ``deferrable``, and the AWS ones. Use ``trigger_rule="all_done"`` so a failed step never
    leaves the cluster running. A cluster that is already gone is not an error.
    """

    template_fields: Sequence[str] = ("job_flow_id", *AWS_TEMPLATE_FIELDS)
    operator_extra_links = (EmrClusterLink(), EmrLogsLink())
    ui_color = "#f9c915"

    def __init__(self, *, job_flow_id: str, waiter_delay: int = 60, waiter_max_attempts: int = 20,
                 deferrable: bool | None = None, aws_conn_id: str | None = "aws_default", **kwargs: Any) -> None:
        conn_id = self.init_aws(aws_conn_id, **_aws(kwargs))
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.job_flow_id = job_flow_id
        self.poll_interval = seconds(waiter_delay, "waiter_delay")
        self.wait_timeout = seconds(waiter_timeout(waiter_delay, waiter_max_attempts), "waiter_delay * "
                                    "waiter_max_attempts")
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)
        EmrClusterBackend.validate_options(self.backend_options)

    def execute(self, context: Context) -> None:
        async def terminate(backend: Backend) -> dict[str, str]:
            await backend.cancel(self.job_flow_id)
            return cluster_links(backend, self.job_flow_id)  # type: ignore[arg-type]

        links = call_backend(EmrClusterBackend, self.conn_id, self.backend_options, terminate)
        push_links(context, (EmrClusterLink,), links)
        self.log.info("Asked EMR to terminate cluster %s", self.job_flow_id)
        if self.deferrable:
            self.defer(
                trigger=EmrClusterTrigger(
                    conn_id=self.conn_id, job_id=self.job_flow_id, policy={"interval": self.poll_interval},
                    deadline=None if self.wait_timeout is None else time.time() + self.wait_timeout,
                    backend_options=self.backend_options, owns_job=False, stop_states=("TERMINATED",),
                ),
                method_name="execute_complete",
            )

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> None:
        ev = JobEvent.from_payload(event)
        if ev.status is not EventStatus.SUCCESS:
            raise SparkJobFailed(f"cluster {ev.job_id} did not terminate cleanly: {ev.backend_state or ev.status.value}"
                                 f" {ev.message or ''}".rstrip())
        self.log.info("Cluster %s terminated", ev.job_id)


class EmrServerlessJobOperator(_EmrJobOperator):
    """Start an EMR Serverless job run — a :class:`SparkJob` or a raw ``job_driver`` — and wait
    (deferred) until it ends; killing the task cancels the run. Returns the job id
    (``APPLICATION:JOBRUN``); :class:`EmrServerlessStartJobOperator` is the official twin.

    :param application_id: the application; :param execution_role_arn: the run's role.
    :param job_driver: a raw ``jobDriver``, or :param job: a :class:`SparkJob` (``sparkSubmit``).
    :param configuration_overrides: ``configurationOverrides`` (with an S3 ``logUri`` the driver's
        log tail reaches the task log).
    :param client_request_token: the ``StartJobRun`` token, sent verbatim by every try (default: the
        task's key and try number, so a resend within one try gets the same run and a retry a new one).
    :param config: further ``StartJobRun`` arguments (``tags``, ``executionTimeoutMinutes`` …).
    :param name: the run's name (the key is appended; default ``dag.task``).
    :param enable_application_ui_links: show the dashboard (Spark UI) link.
    :param cancel_on_kill: ``False`` leaves the run alone when the task is killed.
    """

    trigger_class = EmrServerlessJobTrigger
    link_classes = (EmrServerlessLogsLink,)
    operator_extra_links = (EmrServerlessLogsLink(), EmrServerlessDashboardLink())
    template_fields: Sequence[str] = (
        "job", "application_id", "config", "execution_role_arn", "job_driver", "configuration_overrides", "name",
        *AWS_TEMPLATE_FIELDS,
    )
    template_fields_renderers = {"config": "json", "configuration_overrides": "json", "job_driver": "json"}

    def __init__(self, *, application_id: str, execution_role_arn: str, job_driver: dict[str, Any] | None = None,
                 job: SparkJob | Mapping[str, Any] | None = None, configuration_overrides: dict[str, Any] | None = None,
                 client_request_token: str = "", config: dict[str, Any] | None = None, name: str | None = None,
                 enable_application_ui_links: bool = False, cancel_on_kill: bool = True, poll_interval: float = 60.0,
                 **kwargs: Any) -> None:
        if (job is None) == (job_driver is None):
            raise ConfigurationError(f"{type(self).__name__}: give either job_driver or job (a SparkJob)")
        self.application_id = application_id
        self.execution_role_arn = execution_role_arn
        self.cancel_on_kill = cancel_on_kill
        super().__init__(job=job, poll_interval=poll_interval, **kwargs)
        self.job_driver = job_driver
        self.configuration_overrides = configuration_overrides
        self.client_request_token = client_request_token
        self.config = dict(config or {})
        self.name = name
        self.enable_application_ui_links = enable_application_ui_links

    def watch_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"application_id": self.application_id, "execution_role_arn": self.execution_role_arn}
        return options if self.cancel_on_kill else {**options, "cancel_on_kill": False}

    def build_request(self, context: Context, key: str, attempt: int) -> JobRunRequest:
        extra = dict(self.config)
        name = self.name or extra.pop("name", None)
        driver: Mapping[str, Any] = self.job_driver or {}
        if self.job is not None:
            job = super().build_job(context)
            driver, name = spark_submit_driver(job), name or job.name
        ti = context["ti"]
        token = self.client_request_token or serverless_token(key, attempt)
        return JobRunRequest(application_id=self.application_id, execution_role_arn=self.execution_role_arn,
                             job_driver=driver, configuration_overrides=self.configuration_overrides,
                             name=name or f"{ti.dag_id}.{ti.task_id}", client_token=token, extra=extra)

    def after_submit(self, context: Context, status: JobStatus) -> None:
        if self.enable_application_ui_links:
            ref = EmrServerlessDashboardLink.reference(self.conn_id, status.job_id, self.backend_options)
            context["ti"].xcom_push(key=EmrServerlessDashboardLink().xcom_key, value=ref)


class EmrServerlessStartJobOperator(EmrServerlessJobOperator):
    """Drop-in twin of the official ``EmrServerlessStartJobOperator``: its arguments, its
    waiting rule (``wait_for_completion``, default true) and its return value (the job run id).

    ``waiter_delay`` is the poll interval (default 60); ``waiter_delay * waiter_max_attempts``,
    when ``waiter_max_attempts`` is given, the deadline after which the run is cancelled.
    """

    def __init__(self, *, wait_for_completion: bool = True, **kwargs: Any) -> None:
        super().__init__(wait_for_termination=wait_for_completion, **official_waiter(kwargs, 60.0))
        self.wait_for_completion = wait_for_completion

    def result(self, context: Context, job_id: str) -> str:
        return JobRunRef.parse(job_id).job_run_id
