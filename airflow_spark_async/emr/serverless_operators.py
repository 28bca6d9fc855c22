"""EMR Serverless' operators and sensor: start a job run and wait for it, or watch one.

:class:`EmrServerlessJobOperator` is the core-style operator (a :class:`SparkJob` or a raw
``jobDriver``, always waits, returns ``APPLICATION:JOBRUN``); :class:`EmrServerlessStartJobOperator`
and :class:`EmrServerlessJobSensor` are the official provider's twins (see
:mod:`airflow_spark_async.emr.operators` for what changes underneath). Import them from
``emr.operators`` / ``emr.sensors``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_spark_async.core.backend import JobStatus
from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.operator import push_link
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.emr.compat import (
    AWS_TEMPLATE_FIELDS,
    official_waiter,
)
from airflow_spark_async.emr.ids import JobRunRef
from airflow_spark_async.emr.links import EmrServerlessDashboardLink, EmrServerlessLogsLink
from airflow_spark_async.emr.serverless import JobRunRequest, serverless_token
from airflow_spark_async.emr.spark import spark_submit_driver
from airflow_spark_async.emr.tasks import EmrJobOperator, EmrSensor
from airflow_spark_async.emr.triggers import EmrServerlessJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["SERVERLESS_FAILED_STATES", "EmrServerlessJobOperator", "EmrServerlessJobSensor",
           "EmrServerlessStartJobOperator"]

SERVERLESS_FAILED_STATES = ("FAILED", "CANCELLING", "CANCELLED")


class EmrServerlessJobOperator(EmrJobOperator):
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
            push_link(context, EmrServerlessDashboardLink, ref)


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


class EmrServerlessJobSensor(EmrSensor):
    """Wait for an EMR Serverless job run (official ``EmrServerlessJobSensor`` arguments:
    ``application_id``, ``job_run_id``, ``target_states`` default ``SUCCESS``; ``FAILED``,
    ``CANCELLING`` and ``CANCELLED`` fail it unless they are targets)."""

    trigger_class = EmrServerlessJobTrigger
    template_fields: Sequence[str] = ("application_id", "job_run_id", *AWS_TEMPLATE_FIELDS)

    def __init__(self, *, application_id: str, job_run_id: str, target_states: Collection[str] | None = None,
                 **kwargs: Any) -> None:
        self.application_id = application_id
        self.job_run_id = job_run_id
        targets = set(target_states or ["SUCCESS"])
        super().__init__(target_states=targets, failed_states=set(SERVERLESS_FAILED_STATES) - targets or None,
                         **kwargs)

    def render_job_id(self, context: Context | None = None) -> str:
        return str(JobRunRef(str(self.application_id), str(self.job_run_id)))
