"""How a portable :class:`SparkJob` becomes an EMR step or an EMR Serverless job driver.

Both services run ``spark-submit`` in the end — EMR on EC2 through ``command-runner.jar``, EMR
Serverless through ``sparkSubmitParameters`` — so the options are built once, as a list, and
only the wrapping differs. Resources and environment go in as ``--conf`` properties, which
both accept, rather than as flags only one of them knows.
"""

from __future__ import annotations

import shlex
from typing import Any

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.spec import SparkJob

__all__ = ["ACTIONS_ON_FAILURE", "DEPLOY_MODES", "check_step_options", "spark_step", "spark_submit_driver",
           "spark_submit_options"]

DEPLOY_MODES = ("cluster", "client")
ACTIONS_ON_FAILURE = ("CONTINUE", "CANCEL_AND_WAIT", "TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW")

_FILE_FLAGS = (("jars", "--jars"), ("py_files", "--py-files"), ("files", "--files"), ("archives", "--archives"))


def spark_submit_options(job: SparkJob, *, driver_env_prefix: str | None) -> list[str]:
    """``spark-submit`` options for ``job`` (everything but the application and its arguments).

    :param driver_env_prefix: the property prefix that sets the driver's environment —
        ``spark.yarn.appMasterEnv`` on YARN in cluster mode, ``spark.emr-serverless.driverEnv``
        on EMR Serverless; ``None`` where no property can (client mode: the driver is
        spark-submit's own JVM and inherits the step's environment).
    """
    options: list[str] = []
    if job.main_class:
        options += ["--class", job.main_class]
    for field, flag in _FILE_FLAGS:
        if values := getattr(job, field):
            options += [flag, ",".join(values)]
    conf: dict[str, str] = {}
    if job.name:
        conf["spark.app.name"] = job.name
    if job.packages:
        conf["spark.jars.packages"] = ",".join(job.packages)
    conf.update(job.resource_properties())
    for name, value in job.env.items():
        if driver_env_prefix:
            conf[f"{driver_env_prefix}.{name}"] = value
        conf[f"spark.executorEnv.{name}"] = value
    conf.update(job.conf)  # the user's own properties win
    for prop, value in conf.items():
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
    log is the first container's log.
    """
    check_step_options(action_on_failure=action_on_failure, deploy_mode=deploy_mode)
    prefix = "spark.yarn.appMasterEnv" if deploy_mode == "cluster" else None
    options = spark_submit_options(job, driver_env_prefix=prefix)
    return {
        "Name": job.name or "spark-job",
        "ActionOnFailure": action_on_failure,
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": ["spark-submit", "--deploy-mode", deploy_mode, *options, job.application, *job.args],
        },
    }


def spark_submit_driver(job: SparkJob) -> dict[str, Any]:
    """An EMR Serverless ``jobDriver`` running ``job``."""
    submit: dict[str, Any] = {"entryPoint": job.application}
    if job.args:
        submit["entryPointArguments"] = list(job.args)
    if options := spark_submit_options(job, driver_env_prefix="spark.emr-serverless.driverEnv"):
        submit["sparkSubmitParameters"] = shlex.join(options)
    return {"sparkSubmit": submit}
