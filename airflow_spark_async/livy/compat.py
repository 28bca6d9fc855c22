"""The official Livy provider's argument surface, mapped onto this package's Livy operator and sensor.

Everything here exists so that a DAG written for ``airflow.providers.apache.livy`` runs with only its
imports changed: the official arguments and their meaning (``spark_params`` templated as one field,
``polling_interval <= 0`` as "submit and return", ``retry_args`` as tenacity arguments, ``durable``,
``livy_conn_auth_type`` as a ``requests`` auth class, ``extra_options`` as ``requests`` options,
core counts given as strings), the official hook's reading of connection extras (unknown keys are
headers, ``requests`` options are options), the sensor's ``batch_id`` and its "wait for termination"
default — and refusals, with reasons, of what cannot be honoured. The backend's own behaviour lives
in ``backend``; the classes here only turn official arguments into the core's.

The classes are mixins — ``operators.py`` and ``sensors.py`` put them before nothing else — that
derive from the core's classes because Airflow wraps an operator's ``__init__`` in classes of its
metaclass alone.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_spark_async.core.backend import RequestT
from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.ledger import KeyLedger
from airflow_spark_async.core.openlineage import inject_openlineage, openlineage_flag
from airflow_spark_async.core.operator import SparkJobOperator
from airflow_spark_async.core.retry import PollPolicy
from airflow_spark_async.core.sensor import SparkJobSensor
from airflow_spark_async.core.spec import Alias, SparkJob

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "AUTH_TYPES",
    "DEFAULT_CONN_ID",
    "OFFICIAL_JOB_ARGUMENTS",
    "LivyJob",
    "OfficialOperatorArguments",
    "OfficialSensorArguments",
    "auth_type_name",
    "check_secret_free",
    "job_from_official",
    "official_options",
    "policy_from_retry_args",
    "requests_options",
    "resolve_conn_id",
    "split_extra",
]

DEFAULT_CONN_ID = "livy_default"
AUTH_TYPES = ("basic", "bearer", "none")
#: The official operator's arguments that describe the Spark job (``spark_params`` there).
OFFICIAL_JOB_ARGUMENTS = (
    "file", "class_name", "args", "jars", "py_files", "files", "driver_memory", "driver_cores", "executor_memory",
    "executor_cores", "num_executors", "archives", "name", "conf",
)
#: Livy batch fields that the portable spec has not; they may accompany ``job=``.
LIVY_ONLY_ARGUMENTS = ("queue", "proxy_user")
#: Connection extras that are this package's options, not headers: Livy's own, and core's HTTP
#: options (:meth:`HttpOptions.from_extras`: timeouts, TLS, proxy), in ``requests``' spelling too.
LIVY_EXTRAS = frozenset({"endpoint_prefix", "auth_type", "ui_url"})
HTTP_EXTRAS = frozenset({"timeout", "connect_timeout", "verify", "verify_ssl", "ca_bundle", "cert", "client_cert",
                         "client_key", "proxy", "proxies", "proxy_user", "proxy_password"})
#: ``requests`` options of the official ``extra_options`` that are honoured (the rest of the HTTP
#: options are not ``requests``' and, with credentials, belong in the connection) ...
HONOURED_REQUESTS_OPTIONS = frozenset({"timeout", "verify", "verify_ssl", "cert", "proxies"})
#: ... that only tune ``requests`` and are accepted without effect ...
IGNORED_REQUESTS_OPTIONS = frozenset({"stream", "check_response", "allow_redirects", "max_redirects"})
#: ... and that cannot be honoured by the shared aiohttp sessions.
REFUSED_REQUESTS_OPTIONS = {"trust_env": "proxy settings from the environment", "srv_lookup": "DNS SRV look-ups"}
#: Header names that carry credentials: they belong in the connection, not in a trigger's kwargs,
#: which Airflow stores in its database in clear.
_SENSITIVE_HEADER = re.compile(r"auth|token|secret|passw|cookie|api[-_]?key|credential|session", re.IGNORECASE)


@dataclasses.dataclass
class LivyJob(SparkJob):
    """The portable spec plus Livy's ``queue`` and ``proxyUser``: the ``job=`` of earlier releases, kept
    for DAGs that use it. The operator's ``queue`` and ``proxy_user`` arguments say the same."""

    queue: str | None = None
    proxy_user: str | None = None


# -- connection extras and extra_options, read as the official hook reads them ---------------------------


def _check_requests_option(key: str, what: str) -> None:
    if key in REFUSED_REQUESTS_OPTIONS:
        raise ConfigurationError(
            f"{what}: {key!r} ({REFUSED_REQUESTS_OPTIONS[key]}) is not supported by the Livy backend's shared "
            "aiohttp sessions; set proxy or proxies in the connection instead, and see docs/livy.md"
        )


def requests_options(options: Mapping[str, Any] | None, what: str = "extra_options") -> dict[str, Any]:
    """The official ``extra_options`` (``requests`` options), checked: the honoured ones, the ignored
    ones kept (so they round-trip), anything else refused."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"{what} must be a mapping, got {type(options).__name__}")
    for key in options:
        _check_requests_option(key, what)
        if key not in HONOURED_REQUESTS_OPTIONS | IGNORED_REQUESTS_OPTIONS:
            raise ConfigurationError(
                f"{what}: unknown option {key!r}; supported: {sorted(HONOURED_REQUESTS_OPTIONS)} (and, without "
                f"effect, {sorted(IGNORED_REQUESTS_OPTIONS)})"
            )
    return dict(options)


def split_extra(extra: Mapping[str, Any], what: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A connection's extra as ``(options, headers)``: as in the official hook, every key that is not
    an option is an HTTP header; ``requests`` options that cannot be honoured are refused."""
    options: dict[str, Any] = {}
    headers: dict[str, str] = {}
    for key, value in extra.items():
        _check_requests_option(key, what)
        if key in LIVY_EXTRAS | HTTP_EXTRAS:
            options[key] = value
        elif key not in IGNORED_REQUESTS_OPTIONS:
            headers[key] = str(value)
    return options, headers


def check_secret_free(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """``extra_headers`` as strings, refusing names that look like credentials: the trigger's
    arguments are stored in Airflow's database in clear."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ConfigurationError(f"extra_headers must be a mapping of header names to values, got "
                                 f"{type(headers).__name__}")
    secret = sorted(name for name in headers if _SENSITIVE_HEADER.search(str(name)))
    if secret:
        raise ConfigurationError(
            f"extra_headers {secret} look like credentials. The trigger's arguments are stored in Airflow's "
            "database in clear, so credentials must come from the Livy connection: login/password, a bearer "
            "token as the password, or the header as a key of the connection's Extra."
        )
    return {str(k): str(v) for k, v in headers.items()}


def auth_type_name(value: Any) -> str | None:
    """The auth type of the official ``livy_conn_auth_type`` argument, as a JSON-safe name.

    The official operator takes a ``requests`` auth *class* and calls it with login and password;
    a class cannot travel to the triggerer, so it is mapped to a name here, at parse time.
    """
    if value is None:
        return None
    if isinstance(value, str):
        name = value.strip().lower()
        if name in AUTH_TYPES:
            return name
    else:
        cls = value if isinstance(value, type) else type(value)
        if cls.__name__ in ("HTTPBasicAuth", "BasicAuth"):
            return "basic"
    raise ConfigurationError(
        f"livy_conn_auth_type={value!r} is not supported: use requests' HTTPBasicAuth (the default), or one of "
        f"{list(AUTH_TYPES)} ('bearer' sends the connection's password as a bearer token). Kerberos/SPNEGO "
        "and Digest need per-request handshakes that the triggerer's shared aiohttp pool does not do; put a "
        "gateway such as Knox in front of Livy, or keep the official operator for that connection."
    )


def resolve_conn_id(conn_id: str | None, livy_conn_id: str | None, what: str) -> str:
    """``conn_id`` and the official ``livy_conn_id`` are one setting: they must not disagree."""
    if conn_id and livy_conn_id and conn_id != livy_conn_id:
        raise ConfigurationError(f"{what}: conn_id={conn_id!r} and livy_conn_id={livy_conn_id!r} differ")
    return conn_id or livy_conn_id or DEFAULT_CONN_ID


def official_options(
    backend_options: Mapping[str, Any] | None,
    *,
    endpoint_prefix: str | None = None,
    auth_type: Any = None,
    extra_options: Mapping[str, Any] | None = None,
    extra_headers: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Backend options from the official arguments, over explicit ``backend_options`` (the core
    validates the result at parse time)."""
    official = {
        "endpoint_prefix": endpoint_prefix or None,
        "auth_type": auth_type_name(auth_type),
        "extra_options": dict(extra_options) if extra_options else None,
        "extra_headers": dict(extra_headers) if extra_headers else None,
    }
    return {**(backend_options or {}), **{k: v for k, v in official.items() if v is not None}}


# -- the operator's official arguments ------------------------------------------------------------------


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


def job_from_official(params: Mapping[str, Any]) -> SparkJob:
    """The official ``spark_params`` (rendered) as a :class:`SparkJob`, with the official meaning."""
    file = params.get("file")
    if not file:
        raise ConfigurationError("LivyBatchOperator: file (the application to run) is required, or job=SparkJob(...)")
    file = str(file)
    # Livy, like spark-submit, runs a jar without className from its manifest's Main-Class; the spec
    # requires a main class for non-Python files, and "" says "none, on purpose" (it is never sent).
    main_class = params.get("class_name") or (None if file.split("?")[0].endswith(".py") else "")
    conf = params.get("conf") or {}
    if not isinstance(conf, Mapping):
        raise ConfigurationError(f"'conf' argument must be a dict, got {type(conf).__name__}")
    lists = {arg: params.get(arg) or [] for arg in ("args", "jars", "py_files", "files", "archives")}
    texts = {arg: params.get(arg) or None for arg in ("name", "driver_memory", "executor_memory")}
    counts = {arg: _count(params.get(arg), arg) for arg in ("driver_cores", "executor_cores", "num_executors")}
    return SparkJob(application=file, main_class=main_class, conf=dict(conf), **lists, **texts, **counts)


class OfficialOperatorArguments(SparkJobOperator[RequestT]):
    """The official ``LivyOperator``'s arguments, turned into the core's.

    :param file, class_name, args, conf, jars, py_files, files, archives, driver_memory, driver_cores,
        executor_memory, executor_cores, num_executors, queue, name, proxy_user: the batch, templated
        together as ``spark_params`` like the official operator. ``name`` gets the task's key appended
        (``<name>-asa-…``) so that a retry can find its batch; default ``<dag_id>.<task_id>``.
    :param livy_conn_id: the Livy connection (default ``livy_default``); ``conn_id`` is a synonym.
    :param livy_conn_auth_type: ``requests.auth.HTTPBasicAuth`` (the default), or ``"basic"``,
        ``"bearer"``, ``"none"``. Honoured in the triggerer too.
    :param livy_endpoint_prefix: path in front of ``/batches`` (Knox). Honoured in the triggerer too.
    :param polling_interval: seconds between polls. As in the official operator, ``0`` (or less)
        means "submit and return the batch id without waiting". Omitted: poll every ``poll_interval``
        (10 s) and wait — unlike the official default, see docs/livy.md.
    :param extra_options: ``requests`` options of the official hook: ``timeout``, ``verify`` (a bool or a
        CA bundle), ``cert`` and ``proxies`` are honoured.
    :param extra_headers: headers sent with every request. Credentials are refused here (put them in the
        connection): the trigger's arguments are stored in clear.
    :param retry_args: tenacity arguments; mapped onto the poll policy (see :func:`policy_from_retry_args`).
    :param openlineage_inject_parent_job_info, openlineage_inject_transport_info: as in the official
        operator: add OpenLineage properties to ``conf`` (needs the OpenLineage provider).
    :param durable: ``False`` turns off reattaching to an earlier try's batch (the official meaning).
    """

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
            "file": file, "class_name": class_name, "args": args, "jars": jars, "py_files": py_files,
            "files": files, "driver_memory": driver_memory, "driver_cores": driver_cores,
            "executor_memory": executor_memory, "executor_cores": executor_cores, "num_executors": num_executors,
            "archives": archives, "queue": queue, "name": name, "conf": conf if conf is not None else {},
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
        if polling_interval is not None and poll_interval is not None:
            raise ConfigurationError(f"LivyBatchOperator {task}: give polling_interval or poll_interval, not both")
        #: the official "polling_interval <= 0": submit, return the batch id, do not wait
        self.submit_only = polling_interval is not None and polling_interval <= 0
        kwargs.setdefault("wait_for_termination", not self.submit_only)
        interval = poll_interval if poll_interval is not None else polling_interval
        base_policy = poll_policy.to_dict() if isinstance(poll_policy, PollPolicy) else dict(poll_policy or {})
        super().__init__(
            job=job,
            conn_id=resolve_conn_id(conn_id, livy_conn_id, f"LivyBatchOperator {task}"),
            poll_interval=10.0 if interval is None or self.submit_only else interval,
            poll_policy={**policy_from_retry_args(retry_args), **base_policy},
            deferrable=deferrable,
            job_timeout=job_timeout,
            reattach=reattach if reattach is not None else (durable if durable is not None else True),
            log_tail_lines=log_tail_lines,
            backend_options=official_options(backend_options, endpoint_prefix=livy_endpoint_prefix,
                                             auth_type=livy_conn_auth_type, extra_options=extra_options,
                                             extra_headers=extra_headers),
            ledger=ledger,
            **kwargs,
        )
        self.retry_args = retry_args
        self.openlineage_inject_parent_job_info = openlineage_flag(openlineage_inject_parent_job_info,
                                                                    "spark_inject_parent_job_info")
        self.openlineage_inject_transport_info = openlineage_flag(openlineage_inject_transport_info,
                                                                   "spark_inject_transport_info")

    def official_job(self, context: Context) -> tuple[SparkJob, str | None, str | None]:
        """The rendered official arguments (or ``job``) as ``(job, queue, proxy_user)``."""
        params = self.spark_params
        job = type(self.job).from_dict(self.job.to_dict()) if self.job else job_from_official(params)  # re-validated
        if self.openlineage_inject_parent_job_info or self.openlineage_inject_transport_info:
            conf = inject_openlineage(dict(job.conf), context, parent=self.openlineage_inject_parent_job_info,
                                      transport=self.openlineage_inject_transport_info, log=self.log)
            job = SparkJob.from_dict({**job.to_dict(), "conf": conf})
        queue, proxy_user = (params.get(arg) or getattr(job, arg, None) or None for arg in LIVY_ONLY_ARGUMENTS)
        return job, queue, proxy_user

    def kill(self) -> None:
        """Delete the batch of this task (the official operator's public ``kill``)."""
        self.on_kill()


# -- the sensor's official arguments --------------------------------------------------------------------


class OfficialSensorArguments(SparkJobSensor):
    """The official ``LivySensor``'s arguments: ``batch_id`` (templated, the core's ``job_id``),
    ``livy_conn_id``, ``livy_conn_auth_type``, ``extra_options``, ``endpoint_prefix`` — and its
    meaning: by default it waits for *termination*, succeeding on any terminal state."""

    default_conn_id = DEFAULT_CONN_ID
    template_fields: Sequence[str] = ("batch_id", "conn_id")
    #: ``batch_id`` is the templated field (as in the official sensor); the core reads ``job_id``
    job_id = Alias("batch_id")
    #: Livy's states, and the official ``LivyHook.TERMINAL_STATES``; set by ``sensors``
    known_states: Collection[str] = ()
    terminal_states: Collection[str] = ()

    def __init__(
        self,
        *,
        batch_id: int | str,
        livy_conn_id: str | None = None,
        livy_conn_auth_type: Any | None = None,
        extra_options: dict[str, Any] | None = None,
        endpoint_prefix: str | None = None,
        target_states: Collection[str] | None = None,
        failure_states: Collection[str] | None = None,
        conn_id: str | None = None,
        backend_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        for states, what in ((target_states, "target_states"), (failure_states, "failure_states")):
            unknown = sorted(set(states or ()) - set(self.known_states))
            if unknown:
                raise ConfigurationError(f"LivyBatchSensor {what}: unknown Livy state(s) {unknown}; known: "
                                         f"{sorted(self.known_states)}")
        super().__init__(
            job_id=batch_id,  # type: ignore[arg-type]  # kept as given: it may be a template or XComArg
            conn_id=resolve_conn_id(conn_id, livy_conn_id, "LivyBatchSensor"),
            target_states=target_states or [s for s in self.terminal_states if s not in (failure_states or ())],
            failure_states=failure_states,
            backend_options=official_options(backend_options, endpoint_prefix=endpoint_prefix,
                                             auth_type=livy_conn_auth_type, extra_options=extra_options),
            **kwargs,
        )
