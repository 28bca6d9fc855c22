"""The official amazon provider's argument surface, mapped onto this package's EMR operators.

Everything here exists so that a DAG written for ``airflow.providers.amazon.aws`` runs with only
its imports changed: the AWS arguments (``aws_conn_id``, ``region_name``, ``verify``,
``botocore_config``), the waiter arguments (``waiter_delay`` is the poll interval and
``waiter_delay * waiter_max_attempts`` the deadline), ``wait_policy``, steps and
``job_flow_overrides`` given as strings, the ``RunJobFlow`` request from the ``emr_conn_id``
connection's extra, the sensors' ``failed_states`` and ``max_attempts``, and refusals — with
reasons — of what is not supported (``aws_conn_id=None``, OpenLineage injection). The backends'
own behaviour lives in ``steps``, ``clusters``, ``serverless`` and ``operators``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.runtime import load_connection
from airflow_spark_async.core.spec import Alias

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = [
    "AWS_TEMPLATE_FIELDS",
    "WAIT_POLICY_STATES",
    "AwsArgs",
    "WaitPolicy",
    "check_attempts",
    "connection_fields",
    "job_flow_config",
    "official_waiter",
    "parse_steps",
    "parse_wait_policy",
    "waiter_timeout",
]

AWS_TEMPLATE_FIELDS = ("conn_id", "region_name", "verify")
#: the official arguments that become backend options, so they reach the trigger with the job id
AWS_OPTION_ARGS = ("region_name", "verify", "botocore_config")


class WaitPolicy:
    """The official ``WaitPolicy`` values (it is a ``str`` enum there, so either form works)."""

    WAIT_FOR_COMPLETION = "wait_for_completion"
    WAIT_FOR_STEPS_COMPLETION = "wait_for_steps_completion"


#: cluster states that end EmrCreateJobFlowOperator's wait, per policy (the official waiters'
#: success states; TERMINATED after ALL_STEPS_COMPLETED counts as success by itself)
WAIT_POLICY_STATES: dict[str, tuple[str, ...]] = {
    WaitPolicy.WAIT_FOR_COMPLETION: ("WAITING", "RUNNING"),
    WaitPolicy.WAIT_FOR_STEPS_COMPLETION: ("TERMINATED",),
}


class AwsArgs:
    """The official AWS arguments: ``aws_conn_id``, ``region_name``, ``verify``, ``botocore_config``.

    ``aws_conn_id`` is the core's ``conn_id``. Region, TLS and botocore settings become backend
    options, so they reach the trigger (and the worker that resumes the task) with the job id;
    ``backend_options`` is computed from the rendered attributes whenever it is read.
    """

    conn_id: str
    region_name: str | None
    verify: bool | str | None
    botocore_config: dict[str, Any] | None

    def init_aws(self, aws_conn_id: str | None, *, conn_id: str | None = None, region_name: str | None = None,
                 verify: bool | str | None = None, botocore_config: Mapping[str, Any] | None = None) -> str:
        """Keep the AWS arguments (before the core's ``__init__`` reads ``backend_options``) and
        return the connection id to hand the core."""
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = dict(botocore_config) if botocore_config else None
        if conn_id:
            return conn_id
        if aws_conn_id is None:
            raise ConfigurationError(
                "aws_conn_id=None (boto3's default credentials without an Airflow connection) is not supported: "
                "create an 'aws' connection without login and password instead — it uses the same default chain"
            )
        return aws_conn_id

    aws_conn_id = Alias("conn_id")

    @property
    def backend_options(self) -> dict[str, Any]:
        options = dict(getattr(self, "user_backend_options", {}))
        options.update({name: value for name in AWS_OPTION_ARGS if (value := getattr(self, name, None)) is not None})
        options.update(self.watch_options())
        return options

    @backend_options.setter
    def backend_options(self, value: Mapping[str, Any] | None) -> None:
        self.user_backend_options = dict(value or {})

    def watch_options(self) -> dict[str, Any]:
        """Backend options of this task beyond the AWS ones (cluster, application, stop states)."""
        return {}


def connection_fields(conn: Connection, options: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of :class:`~airflow_spark_async.emr.aws.AwsSettings` from an ``aws`` connection,
    read as the amazon provider reads it: login / password (access key id / secret) or extra
    ``aws_access_key_id`` / ``aws_secret_access_key``, ``aws_session_token``, ``region_name``,
    ``endpoint_url``, ``service_config``, ``role_arn`` with ``assume_role_kwargs`` (only
    ``assume_role_method="assume_role"``), ``profile_name``, ``verify``, ``botocore_config`` or its
    older name ``config_kwargs``. ``options`` (backend options) override region, verify and config."""
    what = f"connection {conn.conn_id!r}"
    extra: dict[str, Any] = dict(conn.extra_dejson or {})
    method = extra.get("assume_role_method")
    if method not in (None, "", "assume_role"):
        raise ConfigurationError(
            f"{what}: assume_role_method={method!r} is not supported by airflow-spark-async; "
            "use 'assume_role' (role_arn + assume_role_kwargs) or give the keys of a principal directly"
        )

    def json_object(name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value or {}, Mapping):
            raise ConfigurationError(f"{what}: {name} must be a JSON object")
        return dict(value or {})

    service_config = json_object("service_config", extra.get("service_config"))
    config = options.get("botocore_config") or extra.get("botocore_config") or extra.get("config_kwargs")
    access_key = conn.login or extra.get("aws_access_key_id") or None
    secret_key = conn.password or extra.get("aws_secret_access_key") or None
    if bool(access_key) != bool(secret_key):
        raise ConfigurationError(
            f"{what}: give both the access key id (login) and the secret access key (password), or neither to "
            "use the default credential chain"
        )
    verify = options.get("verify", extra.get("verify"))
    return {
        "conn_id": conn.conn_id,
        "region_name": options.get("region_name") or extra.get("region_name") or None,
        "endpoint_url": extra.get("endpoint_url") or None,
        "service_config": {str(k): dict(v) for k, v in service_config.items() if isinstance(v, Mapping)},
        "verify": verify if verify not in ("", None) else None,
        "botocore_config": json_object("botocore_config", config),
        "profile_name": extra.get("profile_name") or None,
        "role_arn": extra.get("role_arn") or None,
        "assume_role_kwargs": json_object("assume_role_kwargs", extra.get("assume_role_kwargs")),
        "access_key": access_key,
        "secret_key": secret_key,
        "session_token": extra.get("aws_session_token") or None,
    }


def check_attempts(value: Any, name: str) -> int:
    """An official ``*max_attempts`` argument, checked: an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def official_waiter(kwargs: dict[str, Any], default_delay: float) -> dict[str, Any]:
    """``kwargs`` with the official waiter and OpenLineage arguments turned into ours.

    ``waiter_delay`` is the poll interval (unless ``poll_interval`` is given);
    ``waiter_delay * waiter_max_attempts``, when ``waiter_max_attempts`` is given, the deadline
    after which the job is cancelled (the official triggers give up there but leave the job
    running). OpenLineage injection is refused with a reason.
    """
    kwargs = dict(kwargs)
    lineage = [kwargs.pop(name, False) for name in ("openlineage_inject_parent_job_info",
                                                    "openlineage_inject_transport_info")]
    if any(lineage):
        raise ConfigurationError(
            "openlineage_inject_parent_job_info / openlineage_inject_transport_info are not supported by "
            "airflow-spark-async's EMR operators; remove them (or set spark.openlineage.* in the job's conf)"
        )
    delay, attempts = kwargs.pop("waiter_delay", None), kwargs.pop("waiter_max_attempts", None)
    if kwargs.get("poll_interval") is None:
        kwargs["poll_interval"] = delay if delay is not None else default_delay
    if kwargs.get("job_timeout") is None and attempts is not None:
        kwargs["job_timeout"] = float(kwargs["poll_interval"]) * check_attempts(attempts, "waiter_max_attempts")
    return kwargs


def waiter_timeout(waiter_delay: float, waiter_max_attempts: int) -> timedelta:
    """The official waiter's whole wait, ``waiter_delay * waiter_max_attempts``."""
    return timedelta(seconds=float(waiter_delay) * check_attempts(waiter_max_attempts, "waiter_max_attempts"))


def parse_wait_policy(wait_policy: Any, wait_for_completion: bool | None) -> str | None:
    """The official ``wait_policy`` (or ``wait_for_completion``) of EmrCreateJobFlowOperator, checked."""
    policy = str(getattr(wait_policy, "value", wait_policy)) if wait_policy is not None else None
    if policy is None and wait_for_completion:
        policy = WaitPolicy.WAIT_FOR_COMPLETION
    if policy is not None and policy not in WAIT_POLICY_STATES:
        raise ConfigurationError(f"wait_policy must be one of {sorted(WAIT_POLICY_STATES)}, got {wait_policy!r}")
    return policy


def _parse_literal(text: str, what: str, kind: str) -> Any:
    """A string argument holding a ``kind`` (list, dict): JSON, or a Python literal as the official
    operators read it (from XCom or a rendered ``.json`` file)."""
    try:
        return json.loads(text)
    except ValueError:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise ConfigurationError(f"{what} is a string that is neither JSON nor a Python {kind}: {exc}") from exc


def parse_steps(steps: Any) -> list[Mapping[str, Any]]:
    """Steps as the official operator takes them: a list, one step, or a string holding them."""
    if isinstance(steps, str):
        steps = _parse_literal(steps, "steps", "list")
    if isinstance(steps, Mapping):
        steps = [steps]
    if not isinstance(steps, list) or not steps or not all(isinstance(s, Mapping) for s in steps):
        raise ConfigurationError(f"steps must be a non-empty list of StepConfig dicts, got {type(steps).__name__}")
    for step in steps:
        if not isinstance(step.get("HadoopJarStep"), Mapping) or not step["HadoopJarStep"].get("Jar"):
            raise ConfigurationError(f"step {step.get('Name')!r} has no HadoopJarStep.Jar")
    return list(steps)


def job_flow_config(emr_conn_id: str | None, overrides: str | Mapping[str, Any], log: Any) -> dict[str, Any]:
    """The ``RunJobFlow`` request: the ``emr_conn_id`` connection's extra (a missing connection is an
    empty one, as in the official operator), updated with ``job_flow_overrides``."""
    config: dict[str, Any] = {}
    if emr_conn_id:
        try:
            config = dict(load_connection(emr_conn_id).extra_dejson or {})
        except ConfigurationError:
            log.info("EMR connection %r not found: the cluster is built from job_flow_overrides alone", emr_conn_id)
    if isinstance(overrides, str):
        overrides = _parse_literal(overrides, "job_flow_overrides", "dict")
        if not isinstance(overrides, dict):
            raise ConfigurationError(f"job_flow_overrides must be a dict, got {type(overrides).__name__}")
    config.update(overrides)
    if not config.get("Name"):
        raise ConfigurationError("job_flow_overrides (or the EMR connection's extra) must name the cluster: Name")
    return config
