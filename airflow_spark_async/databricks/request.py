"""From operator arguments to the exact Jobs API request: ``runs/submit`` or ``run-now`` bodies.

Why a :class:`DatabricksRun` that *is* a :class:`SparkJob`: the core's submit path carries one
``SparkJob`` from ``build_job`` to ``Backend.submit`` untouched. Databricks runs are JSON
requests, not spark-submit options, so the Databricks operators build the request here — merged
from ``json`` and the named arguments exactly as the official provider merges them — and hand
it over as this subclass. A plain ``SparkJob`` (the portable spec) is mapped to a one-task
``runs/submit`` body by :func:`spark_job_body`.

What differs from the official provider, on purpose:

* The legacy single-task shape (``spark_python_task``, ``new_cluster`` … at the top level, API 2.0)
  is folded into ``tasks`` — one task named after the Airflow task — so every body is one that
  the 2.1/2.2 API and databricks-sdk's models describe.
* Values keep their JSON types (the official provider turns numbers into strings).
* The idempotency token is per try (see :func:`attempt_token`): a retry never gets the earlier
  try's run back from Databricks (official provider bug apache/airflow#64828).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.spec import SparkJob

__all__ = [
    "RUN_NOW",
    "SUBMIT",
    "DatabricksRun",
    "attempt_token",
    "merge_json",
    "run_now_body",
    "spark_job_body",
    "submit_body",
]

SUBMIT = "runs/submit"
RUN_NOW = "run-now"
MAX_TOKEN = 64

#: task blocks accepted at the top level of a runs/submit request by the official operator
LEGACY_TASK_FIELDS = (
    "notebook_task", "spark_jar_task", "spark_python_task", "spark_submit_task", "pipeline_task", "dbt_task",
    "python_wheel_task", "sql_task", "run_job_task",
)
#: top-level fields that belong to that single task
LEGACY_TASK_LEVEL_FIELDS = ("new_cluster", "existing_cluster_id", "libraries", "environment_key")
#: where the official provider forwards DAG ``params`` in a task that has no parameters of its own
DICT_PARAM_FIELD_BY_TASK = {
    "notebook_task": "base_parameters",
    "python_wheel_task": "named_parameters",
    "sql_task": "parameters",
    "run_job_task": "job_parameters",
}
#: run-now parameter slots that the API refuses alongside ``job_parameters``
LEGACY_RUN_NOW_PARAMS = (
    "notebook_params", "python_params", "jar_params", "spark_submit_params", "python_named_params", "dbt_commands",
)
_TASK_KEY = re.compile(r"[^\w-]")


@dataclasses.dataclass
class DatabricksRun(SparkJob):
    """A Jobs API request, ready to send.

    :param endpoint: :data:`SUBMIT` or :data:`RUN_NOW`.
    :param body: the request body, idempotency token included (``job_name`` is resolved to a
        ``job_id`` by the backend, which can ask the API).
    :param earlier_token: the token of an earlier try that may have reached Databricks without
        the run id being recorded (the worker died in between); the backend sends it first, so
        that run is reattached rather than duplicated.
    :param cancel_previous_runs: cancel the job's active runs before a run-now.
    """

    application: str = ""  # unused: the body says what runs
    endpoint: str = SUBMIT
    body: dict[str, Any] = dataclasses.field(default_factory=dict)
    earlier_token: str | None = None
    cancel_previous_runs: bool = False

    def validate(self) -> None:
        if self.endpoint not in (SUBMIT, RUN_NOW):
            raise ConfigurationError(f"DatabricksRun.endpoint must be {SUBMIT!r} or {RUN_NOW!r}, got {self.endpoint!r}")
        if not isinstance(self.body, Mapping):
            raise ConfigurationError(f"DatabricksRun.body must be a mapping, got {type(self.body).__name__}")
        token = self.body.get("idempotency_token")
        if token is not None and (not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN):
            raise ConfigurationError(
                f"idempotency_token must be a string of 1 to {MAX_TOKEN} characters, got {token!r}"
            )

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


def merge_json(json_arg: Any, named: Mapping[str, Any]) -> dict[str, Any]:
    """The official merge: ``json`` (a mapping, a JSON string, or the Python-literal string that
    Jinja renders from an XCom dict), then every named argument that is not ``None`` on top."""
    if json_arg is None:
        base: dict[str, Any] = {}
    elif isinstance(json_arg, Mapping):
        base = dict(json_arg)
    elif isinstance(json_arg, str):
        base = _parse_json_string(json_arg)
    else:
        raise ConfigurationError(f"json must be a mapping or a JSON string, not {type(json_arg).__name__}")
    base.update((k, v) for k, v in named.items() if v is not None)
    merged = copy.deepcopy(base)
    _check_json_safe(merged, "json")
    return merged


def _parse_json_string(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        try:
            parsed = ast.literal_eval(text)
        except (SyntaxError, ValueError, TypeError, MemoryError) as exc:
            raise ConfigurationError("json is a string that is neither JSON nor a Python dict literal") from exc
    if not isinstance(parsed, Mapping):
        raise ConfigurationError(f"json must resolve to a mapping, not {type(parsed).__name__}")
    return dict(parsed)


def _check_json_safe(value: Any, path: str) -> None:
    if value is None or isinstance(value, (str, bool, int, float)):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigurationError(f"{path}: keys must be strings, got {k!r}")
            _check_json_safe(v, f"{path}.{k}")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json_safe(v, f"{path}[{i}]")
        return
    raise ConfigurationError(f"{path} is a {type(value).__name__}, which JSON cannot carry: {value!r}")


def task_key_for(task_id: str) -> str:
    """A Databricks ``task_key`` (``[A-Za-z0-9_-]``, at most 100 characters) from an Airflow task id."""
    return (_TASK_KEY.sub("_", task_id) or "task")[:100]


def _task_kinds(task: Mapping[str, Any]) -> list[str]:
    return [k for k, v in task.items() if k.endswith("_task") and isinstance(v, Mapping)]


def submit_body(merged: Mapping[str, Any], *, task_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A ``runs/submit`` body from the merged arguments, validated, with DAG params forwarded."""
    body = dict(merged)
    body.setdefault("run_name", task_id)
    legacy = [f for f in LEGACY_TASK_FIELDS if body.get(f) is not None]
    compute = [f for f in LEGACY_TASK_LEVEL_FIELDS if body.get(f) is not None]
    if body.get("tasks") is not None:
        if legacy or compute:
            raise ConfigurationError(
                f"pass either tasks or a single task ({', '.join(legacy + compute)} at the top level), not both: "
                "put the task block, cluster and libraries inside each entry of tasks"
            )
        if not isinstance(body["tasks"], list) or not body["tasks"]:
            raise ConfigurationError("tasks must be a non-empty list of task objects")
    else:
        if len(legacy) != 1:
            raise ConfigurationError(
                "nothing to run: give tasks, or exactly one of " + ", ".join(LEGACY_TASK_FIELDS)
                if not legacy else f"give exactly one task block, got {legacy}"
            )
        task: dict[str, Any] = {"task_key": task_key_for(task_id)}
        for field in (*legacy, *compute):
            task[field] = body.pop(field)
        body["tasks"] = [task]
    keys = set()
    for i, task in enumerate(body["tasks"]):
        if not isinstance(task, Mapping) or not task.get("task_key"):
            raise ConfigurationError(f"tasks[{i}] needs a task_key")
        if task["task_key"] in keys:
            raise ConfigurationError(f"task_key {task['task_key']!r} appears twice in tasks")
        keys.add(task["task_key"])
        kinds = _task_kinds(task)
        if len(kinds) != 1:
            raise ConfigurationError(f"task {task['task_key']!r} needs exactly one task block (…_task), got {kinds}")
        if "dbt_task" in kinds and "git_source" not in body:
            raise ConfigurationError("git_source is required for dbt_task")
        pipeline = task.get("pipeline_task") or {}
        if "pipeline_name" in pipeline:
            raise ConfigurationError(
                "pipeline_task.pipeline_name is not supported: pass pipeline_id (see docs/databricks.md)"
            )
        if params:
            _inject_params(task, params)
    return body


def _inject_params(task: dict[str, Any], params: Mapping[str, Any]) -> None:
    """The official provider's forwarding of DAG params into a task's empty key/value parameters."""
    for kind, field in DICT_PARAM_FIELD_BY_TASK.items():
        block = task.get(kind)
        if isinstance(block, dict) and not block.get(field):
            block[field] = dict(params)


def run_now_body(merged: Mapping[str, Any], *, params: Mapping[str, Any], forward_dag_params: bool) -> dict[str, Any]:
    """A ``run-now`` body from the merged arguments, validated, with DAG params forwarded."""
    body = dict(merged)
    if "job_id" in body and "job_name" in body:
        raise ConfigurationError("Argument 'job_name' is not allowed with argument 'job_id'")
    if "job_id" not in body and "job_name" not in body:
        raise ConfigurationError("run-now needs job_id or job_name")
    if "job_id" in body:
        job_id = body["job_id"]
        if isinstance(job_id, str) and job_id.strip().isdigit():
            job_id = int(job_id)
        if not isinstance(job_id, int) or isinstance(job_id, bool):
            raise ConfigurationError(f"job_id must be an integer, got {body['job_id']!r}")
        body["job_id"] = job_id
    legacy = [k for k in LEGACY_RUN_NOW_PARAMS if k in body]
    if body.get("job_parameters") and legacy:
        raise ConfigurationError(f"job_parameters cannot be combined with {legacy} (the Jobs API refuses it)")
    if "jar_params" in body and "notebook_params" in body:
        raise ConfigurationError("jar_params and notebook_params cannot be given together (the Jobs API refuses it)")
    if forward_dag_params and not body.get("job_parameters") and not legacy and params:
        body["job_parameters"] = dict(params)
    return body


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
    conf = dict(job.conf)
    # num_executors sizes the cluster (num_workers below), not a Spark property here
    conf.update({k: v for k, v in job.resource_properties().items() if k != "spark.executor.instances"})
    for field, prop in (("files", "spark.files"), ("archives", "spark.archives")):
        if values := getattr(job, field):
            conf[prop] = ",".join(values)
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
