"""Deferrable twins of the official EMR sensors: same arguments, no worker slot while waiting.

* ``target_states`` and ``failed_states`` are honoured while deferred — the official deferrable
  sensors wait for a terminal state whatever they were given. Here the trigger stops at the
  first target *or* failed state, so ``target_states=["RUNNING"]`` resumes the task as soon as
  the step runs and ``failed_states=["CANCEL_PENDING"]`` fails it as soon as someone cancels.
* A step or job run that ended in a state that is neither target nor failed fails the sensor
  at once instead of poking until the timeout (it can never change again).
* ``max_attempts`` (official) caps the wait at ``poke_interval * max_attempts`` seconds.
* Sensors only watch: killing the sensor never cancels the step or the run.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_spark_async.core.sensor import SparkJobSensor
from airflow_spark_async.emr.compat import AWS_TEMPLATE_FIELDS, AwsArgs, check_attempts
from airflow_spark_async.emr.ids import JobRunRef, StepsRef
from airflow_spark_async.emr.links import EmrClusterLink, EmrLogsLink
from airflow_spark_async.emr.triggers import EmrClusterTrigger, EmrServerlessJobTrigger, EmrStepsTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["EmrJobFlowSensor", "EmrServerlessJobSensor", "EmrStepSensor"]

STEP_FAILED_STATES = ("CANCELLED", "FAILED", "INTERRUPTED")
SERVERLESS_FAILED_STATES = ("FAILED", "CANCELLING", "CANCELLED")


class _EmrSensor(AwsArgs, SparkJobSensor):
    """The official AWS arguments and ``max_attempts`` on top of the core sensor.

    The job id is built from the rendered arguments (``job_flow_id`` and ``step_id`` are
    templated) in :meth:`render_job_id`.
    """

    default_conn_id: ClassVar[str] = "aws_default"
    ui_color = "#66c3ff"

    def __init__(
        self,
        *,
        target_states: Collection[str] | None,
        failed_states: Collection[str] | None,
        max_attempts: int | None = None,
        deferrable: bool = True,
        aws_conn_id: str | None = "aws_default",
        conn_id: str | None = None,
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        conn_id = self.init_aws(aws_conn_id, conn_id=conn_id, region_name=region_name, verify=verify,
                                botocore_config=botocore_config)
        super().__init__(job_id="", conn_id=conn_id, target_states=target_states, failure_states=failed_states,
                         deferrable=deferrable, **kwargs)
        if max_attempts is not None:
            limit = float(self.poke_interval) * check_attempts(max_attempts, "max_attempts")
            self.timeout = min(float(self.timeout), limit)
        self.max_attempts = max_attempts

    @property
    def job_id(self) -> str:
        """Always the id of the rendered arguments (see :meth:`render_job_id`)."""
        return self.render_job_id()

    @job_id.setter
    def job_id(self, value: str) -> None:
        """Set by the core's ``__init__``; the id always comes from the rendered arguments."""

    @property
    def failed_states(self) -> set[str] | None:
        return self.failure_states


class EmrStepSensor(_EmrSensor):
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


class EmrJobFlowSensor(_EmrSensor):
    """Wait for an EMR cluster to reach a state (official ``EmrJobFlowSensor`` arguments:
    ``job_flow_id``, ``target_states`` default ``TERMINATED`` — ``["WAITING", "RUNNING"]`` waits
    until it is ready —, ``failed_states`` default ``TERMINATED_WITH_ERRORS``, ``max_attempts``,
    ``deferrable``)."""

    trigger_class = EmrClusterTrigger
    template_fields: Sequence[str] = ("job_flow_id", "target_states", "failure_states", *AWS_TEMPLATE_FIELDS)
    operator_extra_links = (EmrClusterLink(), EmrLogsLink())

    def __init__(self, *, job_flow_id: str, target_states: Collection[str] | None = None,
                 failed_states: Collection[str] | None = None, **kwargs: Any) -> None:
        self.job_flow_id = job_flow_id
        super().__init__(target_states=target_states or ["TERMINATED"],
                         failed_states=failed_states or ["TERMINATED_WITH_ERRORS"], **kwargs)

    def render_job_id(self, context: Context | None = None) -> str:
        return str(self.job_flow_id)


class EmrServerlessJobSensor(_EmrSensor):
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
