"""EMR clusters' operators and sensor: create a cluster, terminate one, wait for one's state.

All three are the official provider's twins (:class:`EmrCreateJobFlowOperator`,
:class:`EmrTerminateJobFlowOperator`, :class:`EmrJobFlowSensor`); see
:mod:`airflow_spark_async.emr.operators` for what changes underneath. Import them from
``emr.operators`` / ``emr.sensors``.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseOperator

from airflow_spark_async.core.backend import Backend
from airflow_spark_async.core.operator import SparkJobFailed, default_deferrable, push_links, seconds, start_links
from airflow_spark_async.core.retry import PollPolicy
from airflow_spark_async.core.runtime import call_backend
from airflow_spark_async.core.trigger import DefersToTrigger, EventStatus, JobEvent
from airflow_spark_async.emr.clusters import EmrClusterBackend, JobFlowRequest, cluster_links
from airflow_spark_async.emr.compat import (
    AWS_TEMPLATE_FIELDS,
    WAIT_POLICY_STATES,
    AwsArgs,
    job_flow_config,
    official_waiter,
    parse_wait_policy,
    waiter_timeout,
)
from airflow_spark_async.emr.links import EmrClusterLink, EmrLogsLink
from airflow_spark_async.emr.tasks import EmrJobOperator, EmrSensor, aws_args
from airflow_spark_async.emr.triggers import EmrClusterTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["EmrCreateJobFlowOperator", "EmrJobFlowSensor", "EmrTerminateJobFlowOperator"]


class EmrCreateJobFlowOperator(EmrJobOperator):
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


class EmrTerminateJobFlowOperator(AwsArgs, DefersToTrigger, BaseOperator):
    """Terminate an EMR cluster and, with ``deferrable=True``, wait in the triggerer until it has.

    The official arguments: ``job_flow_id``, ``waiter_delay`` (60), ``waiter_max_attempts`` (20),
    ``deferrable``, and the AWS ones. Use ``trigger_rule="all_done"`` so a failed step never
    leaves the cluster running. A cluster that is already gone is not an error.
    """

    trigger_class = EmrClusterTrigger
    template_fields: Sequence[str] = ("job_flow_id", *AWS_TEMPLATE_FIELDS)
    operator_extra_links = (EmrClusterLink(), EmrLogsLink())
    ui_color = "#f9c915"

    def __init__(self, *, job_flow_id: str, waiter_delay: int = 60, waiter_max_attempts: int = 20,
                 deferrable: bool | None = None, aws_conn_id: str | None = "aws_default", **kwargs: Any) -> None:
        conn_id = self.init_aws(aws_conn_id, **aws_args(kwargs))
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.job_flow_id = job_flow_id
        self.poll_interval = seconds(waiter_delay, "waiter_delay")
        self.poll_policy = PollPolicy(interval=self.poll_interval)
        self.wait_timeout = seconds(waiter_timeout(waiter_delay, waiter_max_attempts), "waiter_delay * "
                                    "waiter_max_attempts")
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)
        EmrClusterBackend.validate_options(self.backend_options)

    def execute(self, context: Context) -> None:
        start_links(self, resumed=False)

        async def terminate(backend: Backend) -> dict[str, str]:
            await backend.cancel(self.job_flow_id)
            return cluster_links(backend, self.job_flow_id)  # type: ignore[arg-type]

        links = call_backend(EmrClusterBackend, self.conn_id, self.backend_options, terminate)
        push_links(context, (EmrClusterLink,), links)
        self.log.info("Asked EMR to terminate cluster %s", self.job_flow_id)
        if self.deferrable:
            # The cluster is someone else's now (owns_job=False): a killed task must not "cancel" it again.
            deadline = None if self.wait_timeout is None else time.time() + self.wait_timeout
            trigger = self.build_trigger(self.job_flow_id, deadline=deadline, owns_job=False,
                                         target_states=("TERMINATED",))
            self.defer(trigger=trigger, method_name="execute_complete")

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> None:
        start_links(self, resumed=True)
        ev = JobEvent.from_payload(event)
        if ev.status is not EventStatus.SUCCESS:
            raise SparkJobFailed(f"cluster {ev.job_id} did not terminate cleanly: {ev.backend_state or ev.status.value}"
                                 f" {ev.message or ''}".rstrip())
        self.log.info("Cluster %s terminated", ev.job_id)


class EmrJobFlowSensor(EmrSensor):
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
