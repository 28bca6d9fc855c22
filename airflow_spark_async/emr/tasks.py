"""The bases of every EMR backend's operators and sensors: the AWS arguments on core's classes.

Why shared: the three backends' operators and sensors take the same AWS arguments
(``aws_conn_id`` or ``conn_id``, ``region_name``, ``verify``, ``botocore_config``) and the same
connection default; each backend's own module (``steps_operators``, ``clusters_operators``,
``serverless_operators``) holds only what differs.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar

from airflow_spark_async.core.operator import SparkJobOperator
from airflow_spark_async.core.sensor import SparkJobSensor
from airflow_spark_async.emr.compat import AwsArgs, check_attempts

__all__ = ["AWS_ARGS", "EmrJobOperator", "EmrSensor", "aws_args"]

#: the AWS arguments every EMR operator takes (see :class:`~airflow_spark_async.emr.compat.AwsArgs`)
AWS_ARGS = ("aws_conn_id", "conn_id", "region_name", "verify", "botocore_config")


def aws_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the AWS arguments out of ``kwargs`` (the rest go to the core operator)."""
    return {name: kwargs.pop(name) for name in AWS_ARGS if name in kwargs}


class EmrJobOperator(AwsArgs, SparkJobOperator):
    """The core operator with the AWS arguments. Like every core operator it waits for the job
    (``deferrable`` chooses where) and returns the job id; the official twins (in each backend's
    module) set the core's :attr:`waits` and :meth:`result` to behave as the amazon provider's operators do."""

    default_conn_id: ClassVar[str] = "aws_default"
    ui_color = "#f9c915"

    def __init__(self, *, aws_conn_id: str | None = "aws_default", **kwargs: Any) -> None:
        aws = aws_args(kwargs)
        conn_id = self.init_aws(aws_conn_id, **aws)
        super().__init__(conn_id=conn_id, **kwargs)


class EmrSensor(AwsArgs, SparkJobSensor):
    """The official AWS arguments and ``max_attempts`` on top of the core sensor.

    The job id is built from the rendered arguments (``job_flow_id`` and ``step_id`` are
    templated) in :meth:`render_job_id`.
    """

    default_conn_id: ClassVar[str] = "aws_default"
    ui_color = "#66c3ff"

    def __init__(self, *, target_states: Collection[str] | None, failed_states: Collection[str] | None,
                 max_attempts: int | None = None, deferrable: bool = True,
                 aws_conn_id: str | None = "aws_default", **kwargs: Any) -> None:
        conn_id = self.init_aws(aws_conn_id, **aws_args(kwargs))
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
