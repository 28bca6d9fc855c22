"""What users write, parsed once: the portable Spark job, and the dataclasses that backend options,
poll policies and connection extras become.

:class:`SparkJob` is a portable description of one Spark application, which every backend maps
to its own request. Why a spec of our own: the same PySpark script runs on a laptop's standalone
cluster, on Livy, on EMR or on Databricks; only the submission request differs. A DAG that
builds a :class:`SparkJob` can move between backends by changing the operator, not the job. Its
fields mirror ``spark-submit``'s options, so their meaning is the one Spark documents.

:func:`from_known_fields`, the ``parse_*`` functions and :class:`BackendOptions` turn a user's
mapping (DAG code, trigger kwargs, connection extras) into a checked dataclass; bad input fails
at DAG parse time with a message that says what to fix.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar, TypeVar, Union

from airflow_spark_async.core.errors import ConfigurationError

__all__ = [
    "EMR_SERVERLESS_DRIVER_ENV",
    "EXECUTOR_ENV",
    "FILE_FIELDS",
    "K8S_DRIVER_ENV",
    "RESOURCE_FIELDS",
    "YARN_DRIVER_ENV",
    "Alias",
    "BackendOptions",
    "SparkJob",
    "from_known_fields",
    "option",
    "parse_bool",
    "parse_float",
    "parse_int",
    "parse_str",
    "parse_str_list",
]

#: resource fields and the Spark properties spark-submit sets for them
RESOURCE_PROPERTIES = (
    ("driver_memory", "spark.driver.memory"),
    ("driver_cores", "spark.driver.cores"),
    ("executor_memory", "spark.executor.memory"),
    ("executor_cores", "spark.executor.cores"),
    ("num_executors", "spark.executor.instances"),
)
RESOURCE_FIELDS = tuple(field for field, _ in RESOURCE_PROPERTIES)
#: the file lists, as spark-submit flags and as the properties those flags set
FILE_FLAGS = (
    ("jars", "--jars", "spark.jars"),
    ("py_files", "--py-files", "spark.submit.pyFiles"),
    ("files", "--files", "spark.files"),
    ("archives", "--archives", "spark.archives"),
)
FILE_FIELDS = tuple(field for field, _, _ in FILE_FLAGS)
#: every field that :meth:`SparkJob.spark_properties` maps, and its property (``env`` aside)
SPARK_PROPERTIES = (
    ("name", "spark.app.name"),
    *RESOURCE_PROPERTIES,
    *((field, prop) for field, _, prop in FILE_FLAGS),
    ("packages", "spark.jars.packages"),
)
#: where the driver's environment goes: YARN cluster mode, Kubernetes, EMR Serverless; and the executors'
YARN_DRIVER_ENV = "spark.yarn.appMasterEnv"
K8S_DRIVER_ENV = "spark.kubernetes.driverEnv"
EMR_SERVERLESS_DRIVER_ENV = "spark.emr-serverless.driverEnv"
EXECUTOR_ENV = "spark.executorEnv"
#: a size such as 512m or 2g, as Spark reads memory settings
MEMORY_SIZE = re.compile(r"^\d+[kmgtp]?b?$", re.IGNORECASE)


def _str_list(value: Sequence[Any] | None, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        raise ConfigurationError(f"SparkJob.{field} must be a list of strings, not the string {value!r}")
    return [str(v) for v in value]


@dataclasses.dataclass
class SparkJob:
    """What to run, independent of where.

    :param application: the main file — a ``.py`` script or a ``.jar`` — as a path or URI the
        cluster can read (``file:///…``, ``s3://…``, ``dbfs:/…``).
    :param main_class: the JVM entry point for a jar; leave empty for Python, or for a jar whose
        manifest names its ``Main-Class`` where the backend can run that (Livy, spark-submit).
    :param args: arguments passed to the application.
    :param conf: Spark properties (``spark.sql.shuffle.partitions`` …), values as strings.
    :param jars, py_files, files, archives: ``--jars``, ``--py-files``, ``--files``, ``--archives``.
    :param packages: Maven coordinates (``--packages``).
    :param name: the application name (``spark.app.name``); defaults to one derived from the task.
    :param driver_memory, executor_memory: sizes such as ``512m`` or ``2g``.
    :param driver_cores, executor_cores, num_executors: counts.
    :param env: environment variables for the driver, where the backend supports them.
    """

    application: str
    main_class: str | None = None
    args: list[str] = dataclasses.field(default_factory=list)
    conf: dict[str, str] = dataclasses.field(default_factory=dict)
    jars: list[str] = dataclasses.field(default_factory=list)
    py_files: list[str] = dataclasses.field(default_factory=list)
    files: list[str] = dataclasses.field(default_factory=list)
    archives: list[str] = dataclasses.field(default_factory=list)
    packages: list[str] = dataclasses.field(default_factory=list)
    name: str | None = None
    driver_memory: str | None = None
    driver_cores: int | None = None
    executor_memory: str | None = None
    executor_cores: int | None = None
    num_executors: int | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)

    # Airflow renders Jinja in these when the spec is an operator's templated field.
    template_fields: ClassVar[Sequence[str]] = ("application", "args", "conf", "name", "env")

    def __post_init__(self) -> None:
        self.validate()

    @property
    def is_python(self) -> bool:
        return self.main_class is None and self.application.split("?")[0].endswith(".py")

    def validate(self) -> None:
        """Reject a spec that no backend could run, with a message that says what to fix."""
        if not isinstance(self.application, str) or not self.application.strip():
            raise ConfigurationError("SparkJob.application is required: the path or URI of a .py or .jar file")
        for field in ("args", "jars", "py_files", "files", "archives", "packages"):
            setattr(self, field, _str_list(getattr(self, field), field))
        for field in ("conf", "env"):
            value = getattr(self, field)
            if not isinstance(value, Mapping):
                raise ConfigurationError(f"SparkJob.{field} must be a mapping of strings, got {type(value).__name__}")
            setattr(self, field, {str(k): str(v) for k, v in value.items()})
        for field in ("driver_memory", "executor_memory"):
            value = getattr(self, field)
            if value is not None and not MEMORY_SIZE.match(str(value)):
                raise ConfigurationError(f"SparkJob.{field}={value!r} is not a size such as '512m' or '2g'")
        for field in ("driver_cores", "executor_cores", "num_executors"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigurationError(f"SparkJob.{field} must be a positive integer, got {value!r}")

    def resource_properties(self) -> dict[str, str]:
        """The driver and executor resources that are set, as Spark properties."""
        return {prop: str(value) for field, prop in RESOURCE_PROPERTIES if (value := getattr(self, field)) is not None}

    def spark_properties(
        self, *, exclude: Collection[str] = (), env_prefixes: Sequence[str] = ()
    ) -> dict[str, str]:
        """The job as Spark properties, the way spark-submit turns its options into them: the name
        (``spark.app.name``), the resources (``spark.driver.memory`` …), the file lists
        (``spark.jars``, ``spark.submit.pyFiles`` …), ``packages`` (``spark.jars.packages``) — then
        :attr:`conf`, which wins over all of them (the user said so explicitly).

        One mapping for every backend; each leaves out what its API has a field of its own for.

        :param exclude: field names to leave out, e.g. ``RESOURCE_FIELDS`` where the request has
            resource fields (Livy), ``"num_executors"`` where it sizes the cluster (Databricks).
        :param env_prefixes: where :attr:`env` goes: each variable becomes ``<prefix>.<NAME>`` for each
            prefix (``YARN_DRIVER_ENV``, ``K8S_DRIVER_ENV``, ``EXECUTOR_ENV`` …); none: not mapped.
        """
        props: dict[str, str] = {}
        for field, prop in SPARK_PROPERTIES:
            value = getattr(self, field)
            if field in exclude or value is None or value == []:
                continue
            props[prop] = ",".join(value) if isinstance(value, list) else str(value)
        for prefix in env_prefixes:
            props.update({f"{prefix}.{name}": value for name, value in self.env.items()})
        props.update(self.conf)
        return props

    def spark_submit_options(self, *, deploy_mode: str | None = None, env_prefixes: Sequence[str] = ()) -> list[str]:
        """spark-submit's options for the job — ``--deploy-mode``, ``--class``, ``--name``, the file
        flags, ``--packages``, then every other property as ``--conf k=v`` — without the application
        and its arguments (EMR Serverless takes those apart: ``sparkSubmitParameters``)."""
        options: list[str] = ["--deploy-mode", deploy_mode] if deploy_mode else []
        if self.main_class:
            options += ["--class", self.main_class]
        if self.name and "spark.app.name" not in self.conf:
            options += ["--name", self.name]
        for field, flag, _ in FILE_FLAGS:
            if values := getattr(self, field):
                options += [flag, ",".join(values)]
        if self.packages:
            options += ["--packages", ",".join(self.packages)]
        props = self.spark_properties(exclude=("name", *FILE_FIELDS, "packages"), env_prefixes=env_prefixes)
        for prop, value in props.items():
            options += ["--conf", f"{prop}={value}"]
        return options

    def spark_submit_args(self, *, deploy_mode: str | None = None, env_prefixes: Sequence[str] = ()) -> list[str]:
        """The spark-submit command line after ``spark-submit``: :meth:`spark_submit_options`, the
        application, its arguments (what EMR's ``command-runner.jar`` step runs)."""
        return [*self.spark_submit_options(deploy_mode=deploy_mode, env_prefixes=env_prefixes), self.application,
                *self.args]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; :meth:`from_dict` is its inverse."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SparkJob:
        return from_known_fields(cls, data, cls.__name__)


# -------------------- fields ----------------------------------------------------------------
# Building a dataclass from a user's mapping, refusing field names it does not have.
#
# Specs, poll policies and backend options all come from DAG code or JSON; a misspelt key
# (``executor_mem``) must fail at parse time with the list of known names, not be ignored.

T = TypeVar("T")


def from_known_fields(cls: type[T], data: Mapping[str, Any] | None, what: str) -> T:
    """``cls(**data)``, after rejecting keys that are not fields of ``cls`` (``what`` names it)."""
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigurationError(f"{what}: unknown field(s) {unknown}; known: {sorted(known)}")
    return cls(**data)


class Alias:
    """A second name for an attribute: the official provider's argument name for the core's one
    (``databricks_conn_id`` for ``conn_id``), readable, writable and templatable under both."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj, self.target)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj, self.target, value)


# -------------------- options ---------------------------------------------------------------
# Backend options and connection extras, parsed once, with messages that name the option.
#
# Why one module: backend options arrive from DAG code (Python values), from trigger kwargs
# (JSON) and from connection extras (often strings: ``"verify": "false"``, ``"timeout": "30"``).
# Each backend used to carry its own ``_truthy``/``_flag``/``float(...)`` — with different
# spellings accepted and different messages. Here each kind of value has one parser, and
# :class:`BackendOptions` applies them to a dataclass's fields from their type hints, so that a
# backend declares its options as fields and its ``validate_options`` is one line::
#
#     @dataclasses.dataclass(frozen=True)
#     class LivyOptions(BackendOptions):
#         what: ClassVar[str] = "Livy backend options"
#         page_size: int = option(100, ge=1, le=10_000)
#         verify_ssl: bool = True
#
#     LivyOptions.from_options({"page_size": "50", "verify_ssl": "false"})  # converted, checked
#
# Every parser raises :class:`~airflow_spark_async.core.errors.ConfigurationError`, so bad input
# fails at DAG parse time (the operator validates its options) with a message that says what to fix.

OptionsT = TypeVar("OptionsT", bound="BackendOptions")

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def parse_bool(value: Any, name: str) -> bool:
    """``True``/``False`` from a bool, ``0``/``1`` or a string such as ``"true"``, ``"off"``, ``"Yes"``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ConfigurationError(f"{name} must be true or false, got {value!r}")


def _bounds(name: str, value: float, kind: str, gt: float | None, ge: float | None, le: float | None) -> None:
    for ok, text in ((gt is None or value > gt, f"> {gt}"), (ge is None or value >= ge, f">= {ge}"),
                     (le is None or value <= le, f"<= {le}")):
        if not ok:
            raise ConfigurationError(f"{name} must be {kind} {text}, got {value!r}")


def parse_float(value: Any, name: str, *, gt: float | None = None, ge: float | None = None,
                le: float | None = None) -> float:
    """A finite number from a number or a numeric string, within the bounds given (``gt=0``: > 0)."""
    number = math.nan
    if not isinstance(value, bool) and isinstance(value, (int, float, str)):
        try:
            number = float(value)
        except ValueError:
            pass
    if not math.isfinite(number):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    _bounds(name, number, "a number", gt, ge, le)
    return number


def parse_int(value: Any, name: str, *, ge: int | None = None, le: int | None = None) -> int:
    """An integer from an int, a whole float (``3.0``, as JSON may give) or a string of digits."""
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if number is None:
        raise ConfigurationError(f"{name} must be an integer, got {value!r}")
    _bounds(name, number, "an integer", None, ge, le)
    return number


def parse_str(value: Any, name: str, *, choices: Collection[str] | None = None) -> str:
    """A non-empty string (stripped); with ``choices``, one of them."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
    text = value.strip()
    if choices is not None and text not in choices:
        raise ConfigurationError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return text


def parse_str_list(value: Any, name: str, *, comma_separated: bool = False) -> list[str]:
    """A list of strings from a list or tuple (``None``: empty).

    A plain string is refused — ``args="a b"`` is a mistake, not one argument — unless
    ``comma_separated``, where ``"a, b"`` (a connection extra typed in a form) is ``["a", "b"]``.
    """
    if value is None:
        return []
    if isinstance(value, str):
        if comma_separated:
            return [part.strip() for part in value.split(",") if part.strip()]
        raise ConfigurationError(f"{name} must be a list of strings, not the string {value!r}")
    if not isinstance(value, Sequence) or isinstance(value, (bytes, bytearray)):
        raise ConfigurationError(f"{name} must be a list of strings, got {type(value).__name__}")
    return [str(item) for item in value]


def option(default: Any = dataclasses.MISSING, *, gt: float | None = None, ge: float | None = None,
           le: float | None = None, choices: Collection[str] | None = None) -> Any:
    """A :class:`BackendOptions` field with bounds (numbers) or choices (strings), checked on construction.

    For scalar defaults; a list or mapping option takes ``dataclasses.field(default_factory=list)``.
    """
    metadata = {key: value for key, value in (("gt", gt), ("ge", ge), ("le", le), ("choices", choices))
                if value is not None}
    return dataclasses.field(default=default, metadata=metadata)


def _convert(value: Any, hint: Any, name: str, meta: Mapping[str, Any]) -> Any:
    """``value`` parsed as the type ``hint`` says; types without a parser pass through unchanged."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None:
            if len(args) < len(typing.get_args(hint)):
                return None
            raise ConfigurationError(f"{name} is required")
        return _convert(value, args[0], name, meta) if len(args) == 1 else value
    if hint is bool:
        return parse_bool(value, name)
    if hint is int:
        return parse_int(value, name, ge=meta.get("ge"), le=meta.get("le"))
    if hint is float:
        return parse_float(value, name, gt=meta.get("gt"), ge=meta.get("ge"), le=meta.get("le"))
    if hint is str:
        return parse_str(value, name, choices=meta.get("choices"))
    if origin in (list, tuple, Sequence) and typing.get_args(hint)[:1] == (str,):
        items = parse_str_list(value, name)
        return items if origin is list else tuple(items)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"{name} must be a mapping, got {type(value).__name__}")
        return dict(value)
    return value


#: the resolved type hints of each options class, read once
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


@dataclasses.dataclass(frozen=True)
class BackendOptions:
    """Base of a backend's options: a frozen dataclass whose fields are the options.

    On construction every field is converted and checked by its type hint — ``bool``, ``int``,
    ``float``, ``str``, ``list[str]``/``tuple[str, ...]``, ``Mapping``/``dict``, each optionally
    ``| None`` — and by its :func:`option` bounds; other types are kept as given. A subclass with a
    ``__post_init__`` of its own calls ``super().__post_init__()`` first.

    :cvar what: names the options in error messages (``"Livy backend options"``).
    """

    what: ClassVar[str] = "backend options"

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            converted = _convert(value, hints.get(field.name, Any), f"{self.what}: {field.name}", field.metadata)
            if converted is not value:
                object.__setattr__(self, field.name, converted)

    @classmethod
    def from_options(cls: type[OptionsT], options: Mapping[str, Any] | None) -> OptionsT:
        """The options of ``options`` (a mapping from DAG code or trigger kwargs); unknown keys are
        refused with the list of known ones, so a misspelt option fails instead of being ignored."""
        data = dict(options or {})
        known = sorted(f.name for f in dataclasses.fields(cls) if f.init)
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigurationError(f"{cls.what}: unknown option(s) {unknown}; known: {known}")
        return cls(**data)

    def to_dict(self, *, defaults: bool = True) -> dict[str, Any]:
        """The JSON-safe form carried in trigger kwargs; without ``defaults``, only the options
        that differ from their defaults (shorter kwargs, and defaults may improve in a release)."""
        data = dataclasses.asdict(self)
        if defaults:
            return data
        return {f.name: data[f.name] for f in dataclasses.fields(self) if data[f.name] != _default(f)}


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default  # MISSING when there is none: never equal to a value
