"""The Jobs API request a Databricks operator sends, the per-try idempotency token, and the portable
:class:`SparkJob` mapped to a one-task ``runs/submit`` body.

Why a request type of its own, not a ``SparkJob``: Databricks runs are JSON requests (``runs/submit``
or ``run-now``), not spark-submit options. The official operators' arguments become one in
:mod:`~airflow_spark_async.databricks.compat`; a portable spec becomes one through
:func:`spark_job_body`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.spec import SparkJob

__all__ = ["RUN_NOW", "SUBMIT", "DatabricksRun", "attempt_token", "spark_job_body", "task_key_for"]

SUBMIT = "runs/submit"
RUN_NOW = "run-now"
MAX_TOKEN = 64
_TASK_KEY = re.compile(r"[^\w-]")


@dataclasses.dataclass(frozen=True)
class DatabricksRun:
    """A Jobs API request, ready to send.

    :param endpoint: :data:`SUBMIT` or :data:`RUN_NOW`.
    :param body: the request body, idempotency token included (``job_name`` is resolved to a
        ``job_id`` by the backend, which can ask the API).
    :param earlier_token: the token of an earlier try that may have reached Databricks without
        the run id being recorded (the worker died in between); the backend sends it first, so
        that run is reattached rather than duplicated.
    :param cancel_previous_runs: cancel the job's active runs before a run-now.
    """

    endpoint: str = SUBMIT
    body: dict[str, Any] = dataclasses.field(default_factory=dict)
    earlier_token: str | None = None
    cancel_previous_runs: bool = False

    def __post_init__(self) -> None:
        if self.endpoint not in (SUBMIT, RUN_NOW):
            raise ConfigurationError(f"DatabricksRun.endpoint must be {SUBMIT!r} or {RUN_NOW!r}, got {self.endpoint!r}")
        if not isinstance(self.body, Mapping):
            raise ConfigurationError(f"DatabricksRun.body must be a mapping, got {type(self.body).__name__}")
        token = self.body.get("idempotency_token")
        if token is not None and (not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN):
            raise ConfigurationError(f"idempotency_token must be 1 to {MAX_TOKEN} characters, got {token!r}")

    @property
    def token(self) -> str | None:
        return self.body.get("idempotency_token")


def attempt_token(base: str, attempt: int) -> str:
    """The idempotency token of try ``attempt`` of the task whose token (or key) is ``base``.

    Databricks answers a reused token with the run it already made, whatever became of it. The
    first try sends ``base`` itself, so a user-given token is sent verbatim; each retry sends a
    token of its own, so the run a retry watches is always one it started or one still running
    from an earlier try (found through the ledger) — never an earlier failure reported as this
    try's success, which is what reusing the token does in the official provider (#64828).
    """
    if attempt <= 1:
        return base
    suffix = f".{attempt}"
    if len(base) + len(suffix) <= MAX_TOKEN:
        return base + suffix
    return hashlib.sha256(base.encode()).hexdigest()[: MAX_TOKEN - len(suffix)] + suffix


def task_key_for(task_id: str) -> str:
    """A Databricks ``task_key`` (``[A-Za-z0-9_-]``, at most 100 characters) from an Airflow task id."""
    return (_TASK_KEY.sub("_", task_id) or "task")[:100]


def spark_job_body(
    job: SparkJob,
    *,
    task_key: str,
    new_cluster: Mapping[str, Any] | None = None,
    existing_cluster_id: str | None = None,
    libraries: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A one-task ``runs/submit`` body for the portable spec: a ``spark_python_task`` (or a
    ``spark_jar_task`` when ``main_class`` is set) on ``new_cluster`` or an existing cluster.

    spark-submit options become what Databricks has for them: jars and packages become
    libraries, ``conf`` and resources the cluster's ``spark_conf``, ``env`` its
    ``spark_env_vars``, ``num_executors`` its ``num_workers``.
    """
    if (new_cluster is None) == (existing_cluster_id is None):
        raise ConfigurationError("a SparkJob on Databricks needs exactly one of new_cluster or existing_cluster_id")
    task: dict[str, Any] = {"task_key": task_key}
    libs: list[dict[str, Any]] = list(libraries or [])
    if job.main_class:
        task["spark_jar_task"] = {"main_class_name": job.main_class, "parameters": list(job.args)}
        libs.append({"jar": job.application})
    else:
        task["spark_python_task"] = {"python_file": job.application, "parameters": list(job.args)}
    libs += [{"jar": jar} for jar in job.jars]
    libs += [{"maven": {"coordinates": coordinates}} for coordinates in job.packages]
    for path in job.py_files:
        kind = path.rsplit(".", 1)[-1].lower()
        if kind not in ("whl", "egg"):
            raise ConfigurationError(
                f"py_files entry {path!r}: Databricks installs Python dependencies as libraries — package it as a "
                "wheel, or import it from a workspace file"
            )
        libs.append({kind: path})
    # the run has a name, libraries and a cluster size of its own; the rest are Spark properties
    conf = job.spark_properties(exclude=("name", "num_executors", "jars", "py_files", "packages"))
    if new_cluster is not None:
        cluster = copy.deepcopy(dict(new_cluster))
        if conf:
            cluster["spark_conf"] = {**cluster.get("spark_conf", {}), **conf}
        if job.env:
            cluster["spark_env_vars"] = {**cluster.get("spark_env_vars", {}), **job.env}
        if job.num_executors is not None and "num_workers" not in cluster and "autoscale" not in cluster:
            cluster["num_workers"] = job.num_executors
        task["new_cluster"] = cluster
    else:
        fixed = sorted([*(["conf"] if conf else []), *(["env"] if job.env else []),
                        *(["num_executors"] if job.num_executors else [])])
        if fixed:
            raise ConfigurationError(
                f"SparkJob fields {fixed} configure a cluster, but existing_cluster_id runs on a cluster that already "
                "exists: use new_cluster, or drop them"
            )
        task["existing_cluster_id"] = existing_cluster_id
    if libs:
        task["libraries"] = libs
    return {"run_name": job.name, "tasks": [task]}
