"""How a portable :class:`SparkJob` becomes an EMR step or an EMR Serverless job driver.

Both services run ``spark-submit`` in the end — EMR on EC2 through ``command-runner.jar``, EMR
Serverless through ``sparkSubmitParameters`` — so the options are built once, from the core's
property mapping (:meth:`SparkJob.spark_properties`), and only the wrapping differs. Everything
but the main class and the file lists goes in as ``--conf`` properties, which both accept,
rather than as flags only one of them knows.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.spec import (
    EMR_SERVERLESS_DRIVER_ENV,
    EXECUTOR_ENV,
    FILE_FIELDS,
    FILE_FLAGS,
    YARN_DRIVER_ENV,
    SparkJob,
)

__all__ = ["ACTIONS_ON_FAILURE", "DEPLOY_MODES", "check_step_options", "spark_step", "spark_submit_driver"]

DEPLOY_MODES = ("cluster", "client")
ACTIONS_ON_FAILURE = ("CONTINUE", "CANCEL_AND_WAIT", "TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW")


def _options(job: SparkJob, env_prefixes: Sequence[str]) -> list[str]:
    """spark-submit's options for ``job``: ``--class``, the file flags, then ``--conf`` for the rest."""
    options = ["--class", job.main_class] if job.main_class else []
    for field, flag, _ in FILE_FLAGS:
        if values := getattr(job, field):
            options += [flag, ",".join(values)]
    for prop, value in job.spark_properties(exclude=FILE_FIELDS, env_prefixes=env_prefixes).items():
        options += ["--conf", f"{prop}={value}"]
    return options


def check_step_options(*, action_on_failure: str, deploy_mode: str) -> None:
    """Reject a step option EMR would refuse, before anything is submitted."""
    if deploy_mode not in DEPLOY_MODES:
        raise ConfigurationError(f"deploy_mode must be one of {DEPLOY_MODES}, got {deploy_mode!r}")
    if action_on_failure not in ACTIONS_ON_FAILURE:
        raise ConfigurationError(f"action_on_failure must be one of {ACTIONS_ON_FAILURE}, got {action_on_failure!r}")


def spark_step(job: SparkJob, *, action_on_failure: str = "CONTINUE", deploy_mode: str = "cluster") -> dict[str, Any]:
    """An ``AddJobFlowSteps`` StepConfig running ``job`` with spark-submit via command-runner.jar.

    Cluster deploy mode by default: the driver runs in YARN, not on the primary node, and its
    log is the first container's log. In client mode no property can set the driver's
    environment: the driver is spark-submit's own JVM and inherits the step's.
    """
    check_step_options(action_on_failure=action_on_failure, deploy_mode=deploy_mode)
    env = (YARN_DRIVER_ENV, EXECUTOR_ENV) if deploy_mode == "cluster" else (EXECUTOR_ENV,)
    args = ["spark-submit", "--deploy-mode", deploy_mode, *_options(job, env), job.application, *job.args]
    return {"Name": job.name or "spark-job", "ActionOnFailure": action_on_failure,
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args}}


def spark_submit_driver(job: SparkJob) -> dict[str, Any]:
    """An EMR Serverless ``jobDriver`` running ``job``."""
    submit: dict[str, Any] = {"entryPoint": job.application}
    if job.args:
        submit["entryPointArguments"] = list(job.args)
    if options := _options(job, (EMR_SERVERLESS_DRIVER_ENV, EXECUTOR_ENV)):
        submit["sparkSubmitParameters"] = shlex.join(options)
    return {"sparkSubmit": submit}
