"""``LivyBatchOperator``: the official ``LivyOperator``'s arguments, a deferrable core underneath.

A DAG written for ``airflow.providers.apache.livy.operators.livy.LivyOperator`` migrates by changing
the import: every argument of the official operator is accepted with the same meaning (see
docs/livy.md for the few differences that remain, and why). The portable :class:`SparkJob` is
accepted too, as ``job=``, so the same job can move between Livy, a standalone cluster, EMR and
Databricks.

What changes underneath: the batch is watched from the triggerer (the worker slot is free while it
runs), a retry reattaches to the batch of an earlier try instead of submitting a second one,
killing or marking the task failed deletes the batch, and the task log gets the last lines of the
batch log — more of them on failure.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf as airflow_conf

from airflow_spark_async.core.errors import BackendError, ConfigurationError
from airflow_spark_async.core.ledger import KeyLedger
from airflow_spark_async.core.operator import SparkJobOperator
from airflow_spark_async.core.policy import PollPolicy
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.livy.backend import LivyJob
from airflow_spark_async.livy.hook import DEFAULT_CONN_ID, LivyOptions, resolve_conn_id
from airflow_spark_async.livy.links import LivyBatchLink, LivyDriverLogLink, LivySparkUILink
from airflow_spark_async.livy.triggers import LivyBatchTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["OFFICIAL_JOB_ARGUMENTS", "LivyBatchOperator", "policy_from_retry_args"]

#: The official operator's arguments that describe the Spark job (``spark_params`` there).
OFFICIAL_JOB_ARGUMENTS = (
    "file",
    "class_name",
    "args",
    "jars",
    "py_files",
    "files",
    "driver_memory",
    "driver_cores",
    "executor_memory",
    "executor_cores",
    "num_executors",
    "archives",
    "name",
    "conf",
)
#: Livy batch fields that the portable spec has not; they may accompany ``job=``.
LIVY_ONLY_ARGUMENTS = ("queue", "proxy_user")


def policy_from_retry_args(retry_args: Mapping[str, Any] | None) -> dict[str, Any]:
    """Poll-policy fields equivalent to the official ``retry_args`` (tenacity keyword arguments).

    The official operator retries ``GET /batches/{id}/state`` with tenacity on the worker; here the
    poll loop (in the triggerer, or on the worker when not deferrable) retries transient errors with
    its own back-off. ``stop_after_attempt(n)`` becomes an error budget of ``n - 1``,
    ``wait_exponential``/``wait_fixed`` become the back-off; anything else (``retry=``, other stop or
    wait strategies) keeps the defaults, because the loop retries 429, 5xx and connection errors —
    never a 4xx — whatever ``retry=`` says.
    """
    if not retry_args:
        return {}
    if not isinstance(retry_args, Mapping):
        raise ConfigurationError(f"retry_args must be a dict of tenacity arguments, got {type(retry_args).__name__}")
    policy: dict[str, Any] = {}
    stops = [retry_args.get("stop")]
    while stops:
        stop = stops.pop()
        stops.extend(getattr(stop, "stops", ()))  # stop_any / stop_all
        attempts = getattr(stop, "max_attempt_number", None)
        if isinstance(attempts, int) and attempts > 0:
            policy["error_budget"] = max(1, attempts - 1)
    wait = retry_args.get("wait")
    fixed = getattr(wait, "wait_fixed", None)
    if isinstance(fixed, (int, float)) and fixed > 0:
        policy["backoff_base"] = policy["backoff_max"] = float(fixed)
    multiplier = getattr(wait, "multiplier", None)
    if isinstance(multiplier, (int, float)):
        base = max(float(multiplier), float(getattr(wait, "min", 0) or 0))
        if base > 0:
            policy["backoff_base"] = base
        ceiling = getattr(wait, "max", None)
        if isinstance(ceiling, (int, float)) and math.isfinite(ceiling) and ceiling < 1e6:
            policy["backoff_max"] = max(float(ceiling), policy.get("backoff_base", 0.0))
    return policy


def _count(value: Any, name: str) -> int | None:
    """``driver_cores`` and friends: the official operator takes ints or digit strings, drops falsy."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    try:
        return int(str(value).strip())
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}") from exc


def _job_from_official(params: Mapping[str, Any]) -> dict[str, Any]:
    """The official ``spark_params`` (rendered) as :class:`LivyJob` fields, with the official meaning."""
    file = params.get("file")
    if not file:
        raise ConfigurationError("LivyBatchOperator: file (the application to run) is required, or job=SparkJob(...)")
    file = str(file)
    class_name = params.get("class_name") or None
    # Livy, like spark-submit, runs a jar without className from its manifest's Main-Class; the spec
    # requires a main class for non-Python files, and "" says "none, on purpose" (it is never sent).
    main_class = class_name if class_name else (None if file.split("?")[0].endswith(".py") else "")
    conf = params.get("conf") or {}
    if not isinstance(conf, Mapping):
        raise ConfigurationError(f"'conf' argument must be a dict, got {type(conf).__name__}")
    return {
        "application": file,
        "main_class": main_class,
        "args": params.get("args") or [],
        "conf": dict(conf),
        "jars": params.get("jars") or [],
        "py_files": params.get("py_files") or [],
        "files": params.get("files") or [],
        "archives": params.get("archives") or [],
        "name": params.get("name") or None,
        "driver_memory": params.get("driver_memory") or None,
        "driver_cores": _count(params.get("driver_cores"), "driver_cores"),
        "executor_memory": params.get("executor_memory") or None,
        "executor_cores": _count(params.get("executor_cores"), "executor_cores"),
        "num_executors": _count(params.get("num_executors"), "num_executors"),
    }


class LivyBatchOperator(SparkJobOperator):
    """Submit a Spark batch to Apache Livy, free the worker while it runs, succeed or fail with it.

    Every argument of the official ``LivyOperator`` (apache-airflow-providers-apache-livy) is accepted
    with its meaning there:

    :param file: path of the file containing the application to execute (required unless ``job``). (templated)
    :param class_name: the application's Java/Spark main class. (templated)
    :param args: application command line arguments. (templated)
    :param conf: Spark configuration properties. (templated)
    :param jars, py_files, files, archives: as ``spark-submit``'s. (templated)
    :param driver_memory, driver_cores, executor_memory, executor_cores, num_executors: resources. (templated)
    :param queue: the YARN queue. (templated)
    :param name: the batch name; the task's key is appended (``<name>-asa-…``) so that a retry can find
        its batch. Default: ``<dag_id>.<task_id>``. (templated)
    :param proxy_user: the user to impersonate. (templated)
    :param livy_conn_id: the Livy connection (default ``livy_default``); ``conn_id`` is a synonym.
    :param livy_conn_auth_type: ``requests.auth.HTTPBasicAuth`` (the default), or ``"basic"``,
        ``"bearer"``, ``"none"``. Honoured in the triggerer too.
    :param livy_endpoint_prefix: path in front of ``/batches`` (Knox). Honoured in the triggerer too.
    :param polling_interval: seconds between polls. As in the official operator, ``0`` (or less)
        means "submit and return the batch id without waiting". Omitted: poll every ``poll_interval``
        (10 s) and wait — unlike the official default, see docs/livy.md.
    :param extra_options: ``requests`` options of the official hook: ``timeout`` and ``verify`` are honoured.
    :param extra_headers: headers sent with every request. Credentials are refused here (put them in the
        connection): the trigger's arguments are stored in clear.
    :param retry_args: tenacity arguments; mapped onto the poll policy (see :func:`policy_from_retry_args`).
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``); with ``False`` the
        same poll loop runs on the worker.
    :param openlineage_inject_parent_job_info, openlineage_inject_transport_info: as in the official
        operator: add OpenLineage properties to ``conf`` (needs the OpenLineage provider).
    :param durable: ``False`` turns off reattaching to an earlier try's batch (the official meaning:
        reconnect to the running batch after a crash instead of submitting a duplicate).

    Beyond the official arguments: ``job`` (a :class:`SparkJob`, instead of ``file`` …), ``conn_id``,
    ``poll_interval``, ``poll_policy``, ``job_timeout``, ``reattach``, ``log_tail_lines`` and
    ``backend_options`` (see :class:`~airflow_spark_async.core.operator.SparkJobOperator` and
    :class:`~airflow_spark_async.livy.hook.LivyOptions`).

    Returns the batch id — as a string, like every operator of this package (the official one returns
    an ``int``) — and pushes the XComs ``job_id`` and ``app_id``, and the links of the Livy batch page,
    the Spark UI and the driver log.
    """

    trigger_class = LivyBatchTrigger
    link_classes = (LivyBatchLink, LivySparkUILink, LivyDriverLogLink)
    operator_extra_links = (LivyBatchLink(), LivySparkUILink(), LivyDriverLogLink())
    default_conn_id = DEFAULT_CONN_ID
    template_fields: Sequence[str] = ("spark_params", "job", "conn_id")
    template_fields_renderers = {"spark_params": "json"}

    def __init__(
        self,
        *,
        file: str | None = None,
        class_name: str | None = None,
        args: Sequence[str | int | float] | None = None,
        conf: dict[Any, Any] | None = None,
        jars: Sequence[str] | None = None,
        py_files: Sequence[str] | None = None,
        files: Sequence[str] | None = None,
        driver_memory: str | None = None,
        driver_cores: int | str | None = None,
        executor_memory: str | None = None,
        executor_cores: int | str | None = None,
        num_executors: int | str | None = None,
        archives: Sequence[str] | None = None,
        queue: str | None = None,
        name: str | None = None,
        proxy_user: str | None = None,
        livy_conn_id: str | None = None,
        livy_conn_auth_type: Any | None = None,
        livy_endpoint_prefix: str | None = None,
        polling_interval: float | None = None,
        extra_options: dict[str, Any] | None = None,
        extra_headers: dict[str, Any] | None = None,
        retry_args: dict[str, Any] | None = None,
        deferrable: bool | None = None,
        openlineage_inject_parent_job_info: bool | None = None,
        openlineage_inject_transport_info: bool | None = None,
        durable: bool | None = None,
        job: SparkJob | Mapping[str, Any] | None = None,
        conn_id: str | None = None,
        poll_interval: float | None = None,
        poll_policy: PollPolicy | Mapping[str, Any] | None = None,
        job_timeout: timedelta | float | None = None,
        reattach: bool | None = None,
        log_tail_lines: int = 100,
        backend_options: Mapping[str, Any] | None = None,
        ledger: KeyLedger | None = None,
        **kwargs: Any,
    ) -> None:
        self.spark_params: dict[str, Any] = {
            "file": file,
            "class_name": class_name,
            "args": args,
            "jars": jars,
            "py_files": py_files,
            "files": files,
            "driver_memory": driver_memory,
            "driver_cores": driver_cores,
            "executor_memory": executor_memory,
            "executor_cores": executor_cores,
            "num_executors": num_executors,
            "archives": archives,
            "queue": queue,
            "name": name,
            "conf": conf if conf is not None else {},
            "proxy_user": proxy_user,
        }
        task = kwargs.get("task_id", "?")
        if job is not None:
            given = [arg for arg in OFFICIAL_JOB_ARGUMENTS if self.spark_params[arg]]
            if given:
                raise ConfigurationError(
                    f"LivyBatchOperator {task}: give either job=SparkJob(...) or the official arguments {given}, "
                    "not both (queue and proxy_user may accompany job)"
                )
        elif not file:
            raise ConfigurationError(f"LivyBatchOperator {task}: file (the application) or job=SparkJob() is required")
        conn_id = resolve_conn_id(conn_id, livy_conn_id, f"LivyBatchOperator {task}")
        if polling_interval is not None and poll_interval is not None:
            raise ConfigurationError(f"LivyBatchOperator {task}: give polling_interval or poll_interval, not both")
        #: the official "polling_interval <= 0": submit, return the batch id, do not wait
        self.submit_only = polling_interval is not None and polling_interval <= 0
        interval = poll_interval if poll_interval is not None else polling_interval
        if interval is None or self.submit_only:
            interval = 10.0
        base_policy = poll_policy.to_dict() if isinstance(poll_policy, PollPolicy) else dict(poll_policy or {})
        super().__init__(
            job=job,
            conn_id=conn_id,
            poll_interval=interval,
            poll_policy={**policy_from_retry_args(retry_args), **base_policy},
            deferrable=deferrable,
            job_timeout=job_timeout,
            reattach=reattach if reattach is not None else (durable if durable is not None else True),
            log_tail_lines=log_tail_lines,
            backend_options=LivyOptions.merge_official(
                backend_options,
                endpoint_prefix=livy_endpoint_prefix,
                auth_type=livy_conn_auth_type,
                extra_options=extra_options,
                extra_headers=extra_headers,
            ),
            ledger=ledger,
            **kwargs,
        )
        self.retry_args = retry_args
        self.openlineage_inject_parent_job_info = (
            openlineage_inject_parent_job_info
            if openlineage_inject_parent_job_info is not None
            else airflow_conf.getboolean("openlineage", "spark_inject_parent_job_info", fallback=False)
        )
        self.openlineage_inject_transport_info = (
            openlineage_inject_transport_info
            if openlineage_inject_transport_info is not None
            else airflow_conf.getboolean("openlineage", "spark_inject_transport_info", fallback=False)
        )

    # -- what to run ---------------------------------------------------------------------

    def build_job(self, context: Context) -> LivyJob:
        """The rendered official arguments (or ``job``) as a :class:`LivyJob`, named after the task."""
        params = self.spark_params
        spec = self.job.to_dict() if self.job is not None else _job_from_official(params)
        spec["conf"] = self._inject_openlineage(dict(spec.get("conf") or {}), context)
        for arg in LIVY_ONLY_ARGUMENTS:
            spec[arg] = params.get(arg) or spec.get(arg) or None
        job = LivyJob(**spec)  # validates, as SparkJob.from_dict would
        if not job.name:
            ti = context["ti"]
            job = dataclasses.replace(job, name=f"{ti.dag_id}.{ti.task_id}")
        return job

    def _inject_openlineage(self, conf: dict[str, Any], context: Context) -> dict[str, Any]:
        if not (self.openlineage_inject_parent_job_info or self.openlineage_inject_transport_info):
            return conf
        try:
            from airflow.providers.common.compat.openlineage.utils.spark import (
                inject_parent_job_information_into_spark_properties,
                inject_transport_information_into_spark_properties,
            )
        except ImportError:
            self.log.warning("OpenLineage injection asked for, but apache-airflow-providers-common-compat is missing")
            return conf
        if self.openlineage_inject_parent_job_info:
            conf = inject_parent_job_information_into_spark_properties(conf, context)
        if self.openlineage_inject_transport_info:
            conf = inject_transport_information_into_spark_properties(conf, context)
        return conf

    # -- waiting and resuming ------------------------------------------------------------------

    @property
    def waits(self) -> bool:
        """``polling_interval <= 0`` means "submit, do not wait", as in the official operator."""
        return not self.submit_only

    def result(self, context: Context, job_id: str) -> Any:
        """The batch id, after pushing the official operator's ``app_id`` XCom."""
        try:
            batch = self.backend_call(lambda backend: backend.batch(job_id))  # type: ignore[attr-defined]
        except BackendError as exc:
            self.log.warning("Could not read the application id of batch %s: %s", job_id, exc)
        else:
            context["ti"].xcom_push(key="app_id", value=batch.app_id)
        return job_id

    def kill(self) -> None:
        """Delete the batch of this task (the official operator's public ``kill``)."""
        self.on_kill()
