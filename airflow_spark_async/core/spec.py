"""A portable description of one Spark application, which every backend maps to its own request.

Why a spec of our own: the same PySpark script runs on a laptop's standalone cluster, on
Livy, on EMR or on Databricks; only the submission request differs. A DAG that builds a
:class:`SparkJob` can move between backends by changing the operator, not the job.

The fields mirror ``spark-submit``'s options, so their meaning is the one Spark documents.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.fields import from_known_fields

__all__ = [
    "EMR_SERVERLESS_DRIVER_ENV",
    "EXECUTOR_ENV",
    "FILE_FIELDS",
    "K8S_DRIVER_ENV",
    "RESOURCE_FIELDS",
    "YARN_DRIVER_ENV",
    "SparkJob",
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
