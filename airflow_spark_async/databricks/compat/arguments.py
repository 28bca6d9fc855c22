"""The official Databricks provider's argument surface, mapped onto this package's operators.

Everything here exists so that a DAG written for ``airflow.providers.databricks`` runs with only
its imports changed: the official argument names and their aliases (``databricks_conn_id``,
``polling_period_seconds``, ``databricks_retry_*``, ``durable``, the sensor's ``run_id``), the
official merge of ``json`` with the named arguments, the legacy single-task shape, the forwarding
of DAG ``params``, and refusals — with reasons — of what is not supported. The backend's own
behaviour (tokens, reattach, failures that explain themselves) lives in ``operators`` and
``backend``; these mixins only turn official arguments into a :class:`DatabricksRun`.

What differs from the official provider, on purpose:

* The legacy single-task shape (``spark_python_task``, ``new_cluster`` … at the top level, API 2.0)
  is folded into ``tasks`` — one task named after the Airflow task — so every body is one that
  the 2.1/2.2 API and databricks-sdk's models describe.
* Values keep their JSON types (the official provider turns numbers into strings).
"""

from __future__ import annotations

import ast
import copy
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.operator import SparkJobOperator
from airflow_spark_async.core.sensor import SparkJobSensor
from airflow_spark_async.core.spec import Alias, SparkJob
from airflow_spark_async.databricks.hook import DEFAULT_CONN_ID
from airflow_spark_async.databricks.request import RUN_NOW, SUBMIT, DatabricksRun, spark_job_body, task_key_for

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "OfficialOperatorArguments",
    "OfficialSensorArguments",
    "RunNowArguments",
    "SubmitRunArguments",
    "forwardable_params",
    "merge_json",
    "run_now_body",
    "submit_body",
]

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
#: the submit operator's named arguments, merged over ``json``
SUBMIT_NAMED = (
    "tasks", "spark_jar_task", "notebook_task", "spark_python_task", "spark_submit_task", "pipeline_task",
    "dbt_task", "new_cluster", "existing_cluster_id", "libraries", "environments", "run_name",
    "timeout_seconds", "idempotency_token", "access_control_list", "git_source", "performance_target",
)
#: the named arguments that say what runs — not allowed next to ``job``
SUBMIT_WORKLOAD = ("tasks", "spark_jar_task", "notebook_task", "spark_python_task", "spark_submit_task",
                   "pipeline_task", "dbt_task")
#: the named arguments that apply to a whole run, also one built from ``job``
SUBMIT_RUN_LEVEL = ("run_name", "timeout_seconds", "idempotency_token", "access_control_list", "git_source",
                    "environments", "performance_target")
#: the run-now operator's named arguments, merged over ``json``
RUN_NOW_NAMED = (
    "job_id", "job_name", "job_parameters", "dbt_commands", "notebook_params", "python_params",
    "python_named_params", "jar_params", "spark_submit_params", "idempotency_token", "performance_target",
)


# -- the official merge and body checks -------------------------------------------------------------


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


def forwardable_params(context: Context, fallback: Any) -> dict[str, Any]:
    """DAG params with a value, as the official provider forwards them to Databricks."""
    params = context.get("params")
    return {k: v for k, v in dict(params if params is not None else fallback or {}).items() if v is not None}


# -- the operators' and the sensor's official arguments ----------------------------------------------


class OfficialOperatorArguments(SparkJobOperator):
    """The arguments both official operators share, turned into the core's.

    The classes here are mixins — ``operators.py`` puts them before its own base — that derive from
    the core's class only because Airflow wraps an operator's ``__init__`` in classes of its
    metaclass alone.

    ``databricks_retry_limit``/``databricks_retry_delay`` become backend options; ``durable``
    (the official provider's reattach switch) becomes ``reattach``; ``polling_period_seconds``
    the poll interval; ``databricks_conn_id`` is the core's ``conn_id`` under its official name.
    """

    template_ext: Sequence[str] = (".json-tpl",)
    #: the official name of the core's ``conn_id`` (templated)
    databricks_conn_id = Alias("conn_id")

    def __init__(
        self,
        *,
        databricks_conn_id: str = DEFAULT_CONN_ID,
        polling_period_seconds: float = 30,
        databricks_retry_limit: int = 3,
        databricks_retry_delay: float = 1,
        databricks_retry_args: Mapping[str, Any] | None = None,
        wait_for_termination: bool = True,
        durable: bool | None = None,
        openlineage_inject_parent_job_info: bool = False,
        openlineage_inject_transport_info: bool = False,
        backend_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("reattach", True if durable is None else bool(durable))
        kwargs.setdefault("poll_interval", polling_period_seconds)
        options = {"retry_limit": databricks_retry_limit, "retry_delay": databricks_retry_delay,
                   **(backend_options or {})}
        conn_id = kwargs.pop("conn_id", None) or databricks_conn_id  # the core's name wins if both are given
        super().__init__(conn_id=conn_id, backend_options=options, wait_for_termination=wait_for_termination,
                         **kwargs)
        self.polling_period_seconds = self.poll_interval
        self.databricks_retry_limit = databricks_retry_limit
        self.databricks_retry_delay = databricks_retry_delay
        self.databricks_retry_args = databricks_retry_args
        if databricks_retry_args:
            self.log.warning("databricks_retry_args (tenacity arguments) is not supported and is ignored: API calls "
                             "retry databricks_retry_limit times, databricks_retry_delay doubling each time")
        if openlineage_inject_parent_job_info or openlineage_inject_transport_info:
            self.log.warning("OpenLineage injection into Databricks runs is not supported and is ignored")


class SubmitRunArguments(OfficialOperatorArguments):
    """The official ``DatabricksSubmitRunOperator``'s arguments, plus the portable ``job``."""

    template_fields: Sequence[str] = ("json", *SUBMIT_NAMED, "databricks_conn_id", "job")

    def __init__(
        self,
        *,
        json: Any | None = None,
        tasks: list[Any] | None = None,
        spark_jar_task: dict[str, Any] | None = None,
        notebook_task: dict[str, Any] | None = None,
        spark_python_task: dict[str, Any] | None = None,
        spark_submit_task: dict[str, Any] | None = None,
        pipeline_task: dict[str, Any] | None = None,
        dbt_task: dict[str, Any] | None = None,
        new_cluster: dict[str, Any] | None = None,
        existing_cluster_id: str | None = None,
        libraries: list[dict[str, Any]] | None = None,
        environments: list[dict[str, Any]] | None = None,
        run_name: str | None = None,
        timeout_seconds: int | None = None,
        idempotency_token: str | None = None,
        access_control_list: list[dict[str, str]] | None = None,
        git_source: dict[str, Any] | None = None,
        performance_target: str | None = None,
        job: SparkJob | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(job=job, **kwargs)
        self.json = json
        self.tasks = tasks
        self.spark_jar_task = spark_jar_task
        self.notebook_task = notebook_task
        self.spark_python_task = spark_python_task
        self.spark_submit_task = spark_submit_task
        self.pipeline_task = pipeline_task
        self.dbt_task = dbt_task
        self.new_cluster = new_cluster
        self.existing_cluster_id = existing_cluster_id
        self.libraries = libraries
        self.environments = environments
        self.run_name = run_name
        self.timeout_seconds = timeout_seconds
        self.idempotency_token = idempotency_token
        self.access_control_list = access_control_list
        self.git_source = git_source
        self.performance_target = performance_target
        if self.job is not None:
            clash = [name for name in SUBMIT_WORKLOAD if getattr(self, name) is not None]
            if clash or json is not None:
                raise ConfigurationError(
                    f"{type(self).__name__}: give job (a SparkJob) or the Databricks task arguments, not both "
                    f"(got job and {clash or ['json']})"
                )

    def run_request(self, context: Context, job: SparkJob | None) -> DatabricksRun:
        """The ``runs/submit`` request of the (rendered) arguments; ``job`` is the rendered portable
        spec, when the operator was given one."""
        if job is None:
            merged = merge_json(self.json, {name: getattr(self, name) for name in SUBMIT_NAMED})
            return DatabricksRun(SUBMIT, submit_body(merged, task_id=self.task_id,
                                                     params=forwardable_params(context, self.params)))
        body = spark_job_body(job, task_key=task_key_for(self.task_id), new_cluster=self.new_cluster,
                              existing_cluster_id=self.existing_cluster_id, libraries=self.libraries)
        run_level = {name: getattr(self, name) for name in SUBMIT_RUN_LEVEL}
        return DatabricksRun(SUBMIT, merge_json(body, run_level))  # the same JSON-safety check as above


class RunNowArguments(OfficialOperatorArguments):
    """The official ``DatabricksRunNowOperator``'s arguments; ``repair_run`` is refused at parse time
    rather than silently not repairing (a failed run fails the task, and a retry starts a new run)."""

    template_fields: Sequence[str] = ("json", *RUN_NOW_NAMED, "databricks_conn_id")

    def __init__(
        self,
        *,
        job_id: int | str | None = None,
        job_name: str | None = None,
        job_parameters: dict[str, Any] | None = None,
        json: Any | None = None,
        dbt_commands: list[str] | None = None,
        notebook_params: dict[str, Any] | None = None,
        python_params: list[str] | None = None,
        jar_params: list[str] | None = None,
        spark_submit_params: list[str] | None = None,
        python_named_params: dict[str, Any] | None = None,
        idempotency_token: str | None = None,
        performance_target: str | None = None,
        repair_run: bool = False,
        databricks_repair_reason_new_settings: dict[str, Any] | None = None,
        cancel_previous_runs: bool = False,
        forward_dag_params: bool = True,
        **kwargs: Any,
    ) -> None:
        if repair_run or databricks_repair_reason_new_settings:
            raise ConfigurationError(
                "repair_run is not supported by airflow-spark-async's DatabricksRunNowOperator: a failed run fails "
                "the task and a retry starts a new run (see docs/databricks.md)"
            )
        super().__init__(**kwargs)
        self.json = json
        self.job_id = job_id
        self.job_name = job_name
        self.job_parameters = job_parameters
        self.dbt_commands = dbt_commands
        self.notebook_params = notebook_params
        self.python_params = python_params
        self.jar_params = jar_params
        self.spark_submit_params = spark_submit_params
        self.python_named_params = python_named_params
        self.idempotency_token = idempotency_token
        self.performance_target = performance_target
        self.repair_run = repair_run
        self.cancel_previous_runs = cancel_previous_runs
        self.forward_dag_params = forward_dag_params

    def run_request(self, context: Context, job: SparkJob | None) -> DatabricksRun:
        """The ``run-now`` request of the (rendered) arguments."""
        merged = merge_json(self.json, {name: getattr(self, name) for name in RUN_NOW_NAMED})
        body = run_now_body(merged, params=forwardable_params(context, self.params),
                            forward_dag_params=self.forward_dag_params)
        return DatabricksRun(RUN_NOW, body, cancel_previous_runs=self.cancel_previous_runs)


class OfficialSensorArguments(SparkJobSensor):
    """The official ``DatabricksRunSensor`` names: ``run_id`` and ``databricks_conn_id`` (templated),
    the core's ``job_id`` and ``conn_id``."""

    template_fields: Sequence[str] = ("run_id", "databricks_conn_id")
    databricks_conn_id = Alias("conn_id")

    def __init__(self, *, run_id: int | str, databricks_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(job_id=str(run_id), conn_id=databricks_conn_id, **kwargs)

    @property
    def run_id(self) -> str:
        return self.job_id

    @run_id.setter
    def run_id(self, value: Any) -> None:
        self.job_id = str(value)
