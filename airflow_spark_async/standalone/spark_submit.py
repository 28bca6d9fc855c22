"""``SparkSubmitOperator``: the official operator's arguments and ``spark`` connection, deferrable.

The official ``SparkSubmitOperator`` (apache-airflow-providers-apache-spark) runs ``spark-submit`` on
the Airflow worker and, in standalone cluster mode, polls the driver from there: the worker slot is
held for the whole job. This twin takes the same arguments and reads the same ``spark`` connection
(host ``spark://…``, port 7077, extras ``deploy-mode``, ``rest-scheme``, ``rest-port`` …), turns them
into the request ``spark-submit`` itself would send to the master's REST submission server, and
defers: no JVM on the worker, the driver watched from the triggerer.

What cannot be deferred — client mode (the driver would run inside the worker), ``local``, YARN and
Kubernetes masters, Kerberos — is refused before anything is submitted, with the reason and what to
use instead; docs/standalone.md lists every argument and how it is honoured.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.openlineage import inject_openlineage, openlineage_flag
from airflow_spark_async.core.spec import SparkJob, parse_int, parse_str_list
from airflow_spark_async.standalone.hook import spark_master_url
from airflow_spark_async.standalone.operators import SparkStandaloneSubmitOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["ALLOWED_SPARK_BINARIES", "SparkSubmitOperator", "read_properties_file"]

ALLOWED_SPARK_BINARIES = ("spark-submit", "spark2-submit", "spark3-submit")
#: official arguments that name what spark-submit would do and REST submission cannot: refused when set
REFUSED = {
    "keytab": "Kerberos needs spark-submit's login on the submitting host; the REST protocol carries no credentials",
    "principal": "Kerberos needs spark-submit's login on the submitting host; the REST protocol carries no "
                 "credentials",
    "use_krb5ccache": "Kerberos ticket caches live on the submitting host, which the driver never sees",
    "proxy_user": "impersonation is a Hadoop-security feature that a standalone master's REST server cannot apply",
    "post_submit_commands": "no spark-submit process and no sidecar run on the worker, so there is nothing to clean",
    "track_driver_via_k8s_api": "Kubernetes masters are not supported (only spark:// standalone masters)",
    "yarn_track_via_rm_api": "YARN masters are not supported (only spark:// standalone masters)",
    "yarn_rm_auth": "YARN masters are not supported (only spark:// standalone masters)",
}
#: spark-submit's comma-separated lists (``jars="a.jar,b.jar"``), lists once templated
FILE_ARGUMENTS = ("jars", "py_files", "files", "archives", "packages")
#: a properties-file line: the key ends at the first ``=``, ``:`` or blank (comments start with # or !)
PROPERTY_LINE = re.compile(r"^(?P<key>[^#!\s=:][^\s=:]*)\s*[=:\s]\s*(?P<value>.*)$")
INSTEAD = "keep the official SparkSubmitOperator (airflow.providers.apache.spark) for this task"


def read_properties_file(path: str) -> dict[str, str]:
    """The ``spark.*`` properties of a ``--properties-file``, read as spark-submit reads it: on the
    submitting host (here the Airflow worker), ``key=value`` or ``key value`` lines, ``#``/``!`` comments."""
    props: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"properties_file {path!r} cannot be read on the Airflow worker: {exc}") from exc
    for line in text.splitlines():
        found = PROPERTY_LINE.match(line.strip())
        if found and found["key"].startswith("spark."):
            props[found["key"]] = found["value"].strip()
    return props


class SparkSubmitOperator(SparkStandaloneSubmitOperator):
    """Submit a Spark application to a standalone master in cluster mode, defer while it runs.

    A drop-in for ``airflow.providers.apache.spark.operators.spark_submit.SparkSubmitOperator``: the
    same arguments, templated fields and ``spark`` connection; change only the import. The driver runs
    on a Spark worker, so ``application``, ``py_files``, ``jars`` and ``files`` must be paths or URIs the
    cluster can read (as with spark-submit in cluster mode).

    Honoured as spark-submit honours them: ``application``, ``application_args``, ``java_class``,
    ``conf``, ``jars``, ``py_files``, ``files``, ``archives``, ``packages``, ``exclude_packages``,
    ``repositories``, ``driver_class_path``, ``driver_memory``, ``executor_memory``, ``executor_cores``,
    ``num_executors``, ``total_executor_cores``, ``name`` (the task's key is appended), ``properties_file``
    (read on the worker), ``deploy_mode`` (must be ``cluster``), ``status_poll_interval``,
    ``openlineage_inject_parent_job_info`` / ``_transport_info`` and ``durable`` (reattach on retry).
    ``env_vars`` reach the driver (spark-submit refuses them in standalone cluster mode).
    Accepted without effect, as spark-submit on a standalone master: ``yarn_queue`` (and the ``queue``
    extra), ``verbose``, ``spark_binary`` (checked as the official hook checks it).
    Refused when set, with the reason: Kerberos (``keytab``, ``principal``, ``use_krb5ccache``),
    ``proxy_user``, ``post_submit_commands`` and the YARN/Kubernetes tracking options.

    Also takes the core's ``deferrable`` (default ``True``: the official class has no such argument,
    and deferring is this class's purpose), ``job_timeout``, ``poll_policy``, ``log_tail_lines``.
    Returns ``None`` like the official operator; the driver id is the XCom ``job_id``.
    """

    default_conn_id = "spark_default"
    template_fields: Sequence[str] = (
        "application", "conf", "files", "py_files", "jars", "driver_class_path", "packages", "exclude_packages",
        "keytab", "principal", "proxy_user", "name", "application_args", "env_vars", "post_submit_commands",
        "properties_file",
    )
    template_fields_renderers = {"conf": "json", "env_vars": "json", "application_args": "json"}

    def __init__(
        self,
        *,
        application: str = "",
        conf: dict[Any, Any] | None = None,
        conn_id: str = "spark_default",
        files: str | None = None,
        py_files: str | None = None,
        archives: str | None = None,
        driver_class_path: str | None = None,
        jars: str | None = None,
        java_class: str | None = None,
        packages: str | None = None,
        exclude_packages: str | None = None,
        repositories: str | None = None,
        total_executor_cores: int | None = None,
        executor_cores: int | None = None,
        executor_memory: str | None = None,
        driver_memory: str | None = None,
        keytab: str | None = None,
        principal: str | None = None,
        proxy_user: str | None = None,
        name: str = "arrow-spark",
        num_executors: int | None = None,
        status_poll_interval: int = 1,
        application_args: list[Any] | None = None,
        env_vars: dict[str, Any] | None = None,
        verbose: bool = False,
        spark_binary: str | None = None,
        properties_file: str | None = None,
        yarn_queue: str | None = None,
        deploy_mode: str | None = None,
        use_krb5ccache: bool = False,
        post_submit_commands: list[str] | None = None,
        track_driver_via_k8s_api: bool = False,
        yarn_track_via_rm_api: bool = False,
        yarn_rm_auth: Any = None,
        openlineage_inject_parent_job_info: bool | None = None,
        openlineage_inject_transport_info: bool | None = None,
        reconnect_on_retry: bool | None = None,
        durable: bool | None = None,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        task = kwargs.get("task_id", "?")
        given = {"keytab": keytab, "principal": principal, "use_krb5ccache": use_krb5ccache, "proxy_user": proxy_user,
                 "post_submit_commands": post_submit_commands, "track_driver_via_k8s_api": track_driver_via_k8s_api,
                 "yarn_track_via_rm_api": yarn_track_via_rm_api, "yarn_rm_auth": yarn_rm_auth}
        refused = [f"{arg} ({REFUSED[arg]})" for arg, value in given.items() if value]
        if refused:
            raise ConfigurationError(f"SparkSubmitOperator {task}: not supported: {'; '.join(refused)}; {INSTEAD}")
        if spark_binary is not None and spark_binary not in ALLOWED_SPARK_BINARIES:
            raise ConfigurationError(f"SparkSubmitOperator {task}: spark_binary must be one of "
                                     f"{list(ALLOWED_SPARK_BINARIES)}, got {spark_binary!r}")
        if deploy_mode is not None and deploy_mode != "cluster":
            raise ConfigurationError(_client_mode(task, f"deploy_mode={deploy_mode!r}"))
        if reconnect_on_retry is not None:
            warnings.warn("reconnect_on_retry is deprecated (as in the official operator): use durable",
                          DeprecationWarning, stacklevel=2)
            durable = reconnect_on_retry if durable is None else durable
        kwargs.setdefault("reattach", True if durable is None else bool(durable))
        super().__init__(conn_id=conn_id, poll_interval=status_poll_interval, deferrable=deferrable, **kwargs)
        # as the official operator names them (templated fields among them), read by build_request
        self.application, self.application_args, self.java_class, self.name = application, application_args, \
            java_class, name
        self.conf, self.properties_file, self.env_vars = conf, properties_file, env_vars
        self.files, self.py_files, self.jars, self.archives = files, py_files, jars, archives
        self.packages, self.exclude_packages, self.repositories = packages, exclude_packages, repositories
        self.driver_class_path, self.driver_memory, self.executor_memory = driver_class_path, driver_memory, \
            executor_memory
        self.executor_cores, self.num_executors, self.total_executor_cores = executor_cores, num_executors, \
            total_executor_cores
        self.keytab, self.principal, self.proxy_user = keytab, principal, proxy_user
        self.post_submit_commands = post_submit_commands
        self.verbose, self.spark_binary, self.yarn_queue, self.deploy_mode = verbose, spark_binary, yarn_queue, \
            deploy_mode
        self.openlineage_inject_parent_job_info = openlineage_flag(openlineage_inject_parent_job_info,
                                                                   "spark_inject_parent_job_info")
        self.openlineage_inject_transport_info = openlineage_flag(openlineage_inject_transport_info,
                                                                  "spark_inject_transport_info")

    def build_request(self, context: Context, key: str, attempt: int) -> SparkJob:
        """The rendered arguments as the job spark-submit would send, after the connection's checks
        (the master and deploy mode come from it); nothing has been submitted yet."""
        self._check_connection()
        if not self.application:
            raise ConfigurationError(f"SparkSubmitOperator {self.task_id}: application (a .py or .jar) is required")
        if self.conf is not None and not isinstance(self.conf, Mapping):
            raise ConfigurationError(f"SparkSubmitOperator {self.task_id}: conf must be a dict, got "
                                     f"{type(self.conf).__name__}")
        flags = {"spark.driver.extraClassPath": self.driver_class_path, "spark.jars.excludes": self.exclude_packages,
                 "spark.jars.repositories": self.repositories, "spark.cores.max": self.total_executor_cores}
        job = SparkJob(
            application=str(self.application),
            main_class=self.java_class or None,
            args=[str(arg) for arg in self.application_args or []],
            conf={prop: str(value) for prop, value in flags.items() if value},
            **{field: parse_str_list(getattr(self, field), field, comma_separated=True) for field in FILE_ARGUMENTS},
            name=str(self.name) if self.name else f"{context['ti'].dag_id}.{context['ti'].task_id}",
            driver_memory=self.driver_memory or None, executor_memory=self.executor_memory or None,
            **{field: parse_int(value, field, ge=1) if (value := getattr(self, field)) else None
               for field in ("executor_cores", "num_executors")},
            env={str(k): str(v) for k, v in (self.env_vars or {}).items()},
        )
        # spark-submit's precedence: the properties file, then --conf, then the dedicated flags
        flagged = job.spark_properties()
        given = {**(read_properties_file(self.properties_file) if self.properties_file else {}),
                 **{str(k): str(v) for k, v in (self.conf or {}).items()}}
        conf = inject_openlineage({k: v for k, v in given.items() if k not in flagged}, context,
                                  parent=self.openlineage_inject_parent_job_info,
                                  transport=self.openlineage_inject_transport_info, log=self.log)
        return dataclasses.replace(job, conf={**conf, **job.conf})

    def _check_connection(self) -> None:
        """What the ``spark`` connection says that this operator cannot defer, before anything runs."""
        conn = self.connection()
        if conn.conn_type != "spark":
            return  # a spark_standalone connection: the REST server is named directly
        extra = conn.extra_dejson or {}
        deploy_mode = self.deploy_mode or extra.get("deploy-mode")
        if deploy_mode != "cluster":
            what = (f"the connection's deploy-mode extra is {deploy_mode!r}" if deploy_mode
                    else "no deploy mode is set, and spark-submit's default is client")
            raise ConfigurationError(_client_mode(self.task_id, what))
        binary = self.spark_binary or extra.get("spark-binary")
        if binary is not None and binary not in ALLOWED_SPARK_BINARIES:
            raise ConfigurationError(f"connection {conn.conn_id!r}: the spark-binary extra must be one of "
                                     f"{list(ALLOWED_SPARK_BINARIES)}, got {binary!r}")
        kerberos = sorted(k for k in ("principal", "keytab") if extra.get(k))
        if kerberos:
            raise ConfigurationError(f"connection {conn.conn_id!r} (master {spark_master_url(conn)}): extras "
                                     f"{kerberos} are not supported ({REFUSED['keytab']}); {INSTEAD}")

    def result(self, context: Context, job_id: str) -> None:
        """``None``, as the official operator returns; the driver id is in the XCom ``job_id``."""
        return None


def _client_mode(task: str, what: str) -> str:
    return (f"SparkSubmitOperator {task}: {what}. In client mode the driver runs inside the Airflow worker, so the "
            "task cannot be deferred: set deploy_mode='cluster' (or the connection's extra deploy-mode: cluster) so "
            f"the driver runs on a Spark worker, or {INSTEAD}")

