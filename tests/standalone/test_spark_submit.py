"""``SparkSubmitOperator``, the deferrable twin of the official one: the official arguments and
``spark`` connection become the request spark-submit would send; what cannot defer is refused
before anything is submitted, saying why and what to use instead."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.models.connection import Connection

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.spark_submit import SparkSubmitOperator
from airflow_spark_async.standalone.backend import build_create_request
from airflow_spark_async.standalone.hook import StandaloneSettings
from airflow_spark_async.standalone.spark_submit import read_properties_file

#: every argument of the official SparkSubmitOperator (apache-airflow-providers-apache-spark, newest)
OFFICIAL_ARGUMENTS = {
    "application", "conf", "conn_id", "files", "py_files", "archives", "driver_class_path", "jars", "java_class",
    "packages", "exclude_packages", "repositories", "total_executor_cores", "executor_cores", "executor_memory",
    "driver_memory", "keytab", "principal", "proxy_user", "name", "num_executors", "status_poll_interval",
    "application_args", "env_vars", "verbose", "spark_binary", "properties_file", "yarn_queue", "deploy_mode",
    "use_krb5ccache", "post_submit_commands", "track_driver_via_k8s_api", "yarn_track_via_rm_api", "yarn_rm_auth",
    "openlineage_inject_parent_job_info", "openlineage_inject_transport_info", "reconnect_on_retry", "durable",
}
OFFICIAL_TEMPLATE_FIELDS = (
    "application", "conf", "files", "py_files", "jars", "driver_class_path", "packages", "exclude_packages",
    "keytab", "principal", "proxy_user", "name", "application_args", "env_vars", "post_submit_commands",
    "properties_file",
)


def spark_conn(host: str = "spark://10.0.0.5", port: int | None = 7077, **extra: Any) -> Connection:
    return Connection(conn_id="spark_default", conn_type="spark", host=host, port=port, extra=json.dumps(extra))


def operator_with(conn: Connection, **kwargs: Any) -> SparkSubmitOperator:
    op = SparkSubmitOperator(task_id="submit", **{"application": "file:///apps/job.py", **kwargs})
    op._conn = conn  # what execute() reads once per try
    return op


def request_of(op: SparkSubmitOperator) -> SparkJob:
    context: Any = {"ti": SimpleNamespace(dag_id="d", task_id="submit")}
    return op.build_request(context, key="k1", attempt=1)


def test_takes_every_argument_and_templated_field_of_the_official_operator() -> None:
    params = set(inspect.signature(SparkSubmitOperator.__init__).parameters) - {"self", "kwargs"}
    assert OFFICIAL_ARGUMENTS <= params, sorted(OFFICIAL_ARGUMENTS - params)
    assert tuple(SparkSubmitOperator.template_fields) == OFFICIAL_TEMPLATE_FIELDS


def test_the_official_spark_connection_names_the_master_and_its_rest_server() -> None:
    settings = StandaloneSettings.from_connection(spark_conn(**{"rest-port": "16066", "deploy-mode": "cluster",
                                                                "queue": "root.default"}))
    assert settings.master_url == "spark://10.0.0.5:7077"
    assert settings.rest_url == "http://10.0.0.5:16066"
    assert settings.ui_url == "http://10.0.0.5:8080"
    # the URI form (AIRFLOW_CONN_SPARK_DEFAULT=spark://10.0.0.5:7077?rest-scheme=https) keeps only the host
    uri = Connection(conn_id="spark_default", uri="spark://10.0.0.5:7077?rest-scheme=https&deploy-mode=cluster")
    assert StandaloneSettings.from_connection(uri).rest_url == "https://10.0.0.5:6066"


@pytest.mark.parametrize(("host", "port", "refusal"), [
    ("local[*]", None, "only a Spark standalone master"),
    ("yarn", None, "only a Spark standalone master"),
    ("k8s://https://kube:6443", None, "only a Spark standalone master"),
    ("spark://m1:7077,m2", 7077, "standby masters"),
])
def test_masters_that_take_no_rest_submissions_are_refused_with_what_to_use(host: str, port: int | None,
                                                                            refusal: str) -> None:
    with pytest.raises(ConfigurationError, match=refusal) as raised:
        StandaloneSettings.from_connection(spark_conn(host=host, port=port))
    assert "official SparkSubmitOperator" in str(raised.value)


def test_a_rest_connection_given_the_rpc_port_says_how_to_enable_rest_submissions() -> None:
    """Keeping port 7077 used to end in a bare ServerDisconnectedError from …:7077/v1/submissions/create."""
    conn = Connection(conn_id="s", conn_type="spark_standalone", host="10.0.0.5", port=7077)
    with pytest.raises(ConfigurationError, match="RPC port") as raised:
        StandaloneSettings.from_connection(conn)
    assert "spark.master.rest.enabled=true" in str(raised.value) and "6066" in str(raised.value)
    with pytest.raises(ConfigurationError, match="RPC port"):
        StandaloneSettings.from_connection(spark_conn(**{"rest-port": 7077}))


def test_official_arguments_become_the_request_spark_submit_would_send(tmp_path: Path) -> None:
    props = tmp_path / "spark-defaults.conf"
    props.write_text("# defaults\nspark.executor.memory 4g\nspark.sql.shuffle.partitions=7\n"
                     "spark.eventLog.enabled: true\nnot.spark.key 1\n")
    op = operator_with(
        spark_conn(**{"deploy-mode": "cluster", "queue": "root.default"}),
        application="file:///apps/job.py", application_args=["--day", 20260101],
        conf={"spark.sql.shuffle.partitions": "11", "spark.cores.max": "99", "spark.executor.memory": "8g"},
        properties_file=str(props),
        jars="file:///a.jar, file:///b.jar", py_files="file:///lib.zip", files="file:///f.txt",
        archives="file:///env.tgz#env", packages="org.x:y:1.0,org.x:z:2.0", exclude_packages="org.x:w",
        repositories="file:///repo", driver_class_path="/opt/extra/*", total_executor_cores=3, executor_cores="2",
        executor_memory="1g", driver_memory="512m", num_executors=2, name="nightly", env_vars={"TZ": "UTC"},
        verbose=True, spark_binary="spark3-submit", yarn_queue="ignored-on-standalone",
    )
    job = request_of(op)
    assert job.application == "file:///apps/job.py" and job.main_class is None and job.is_python
    assert job.args == ["--day", "20260101"]
    assert job.jars == ["file:///a.jar", "file:///b.jar"] and job.packages == ["org.x:y:1.0", "org.x:z:2.0"]
    assert (job.py_files, job.files, job.archives) == (["file:///lib.zip"], ["file:///f.txt"], ["file:///env.tgz#env"])
    assert (job.executor_cores, job.num_executors, job.executor_memory, job.driver_memory) == (2, 2, "1g", "512m")
    assert job.env == {"TZ": "UTC"}
    # spark-submit's precedence: properties file < --conf < the dedicated flags
    assert job.conf["spark.sql.shuffle.partitions"] == "11" and job.conf["spark.eventLog.enabled"] == "true"
    assert job.conf["spark.cores.max"] == "3" and "not.spark.key" not in job.conf
    assert job.conf["spark.jars.excludes"] == "org.x:w" and job.conf["spark.jars.repositories"] == "file:///repo"
    assert job.conf["spark.driver.extraClassPath"] == "/opt/extra/*"
    body = build_create_request(job, key="k1", settings=StandaloneSettings.from_connection(op.connection()))
    props_sent = body["sparkProperties"]
    assert props_sent["spark.master"] == "spark://10.0.0.5:7077" and props_sent["spark.submit.deployMode"] == "cluster"
    assert props_sent["spark.app.name"] == "nightly [k1]"
    assert props_sent["spark.jars.packages"] == "org.x:y:1.0,org.x:z:2.0"
    assert props_sent["spark.executor.memory"] == "1g"  # the flag, over --conf and the properties file
    assert body["environmentVariables"]["TZ"] == "UTC"
    assert body["appArgs"] == ["file:///apps/job.py", "file:///lib.zip", "--day", "20260101"]


def test_a_jar_with_its_main_class() -> None:
    op = operator_with(spark_conn(**{"deploy-mode": "cluster"}), application="file:///apps/app.jar",
                       java_class="org.example.Main", application_args=["a"])
    body = build_create_request(request_of(op), key="k1",
                                settings=StandaloneSettings.from_connection(op.connection()))
    assert (body["mainClass"], body["appResource"], body["appArgs"]) == ("org.example.Main", "file:///apps/app.jar",
                                                                         ["a"])


@pytest.mark.parametrize(("extra", "kwargs", "refusal"), [
    ({}, {}, "no deploy mode is set, and spark-submit's default is client"),
    ({"deploy-mode": "client"}, {}, "deploy-mode extra is 'client'"),
    ({"deploy-mode": "cluster", "principal": "etl@REALM"}, {}, r"extras \['principal'\] are not supported"),
    ({"deploy-mode": "cluster", "spark-binary": "/opt/spark/bin/spark-submit"}, {}, "spark-binary extra must be"),
])
def test_what_the_connection_says_cannot_defer_is_refused_before_submitting(
    extra: dict[str, Any], kwargs: dict[str, Any], refusal: str
) -> None:
    op = operator_with(spark_conn(**extra), **kwargs)
    with pytest.raises(ConfigurationError, match=refusal) as raised:
        request_of(op)
    if "deploy" in refusal:
        assert "deploy_mode='cluster'" in str(raised.value) and "cannot be deferred" in str(raised.value)


def test_the_operator_argument_wins_over_the_connections_deploy_mode() -> None:
    op = operator_with(spark_conn(**{"deploy-mode": "client"}), deploy_mode="cluster")
    assert request_of(op).application == "file:///apps/job.py"


@pytest.mark.parametrize(("kwargs", "refusal"), [
    ({"deploy_mode": "client"}, "cannot be deferred"),
    ({"keytab": "/etc/etl.keytab"}, "keytab .Kerberos"),
    ({"principal": "etl@REALM"}, "principal"),
    ({"proxy_user": "alice"}, "impersonation"),
    ({"use_krb5ccache": True}, "ticket caches"),
    ({"post_submit_commands": ["curl -X POST localhost:15020/quitquitquit"]}, "no sidecar"),
    ({"yarn_track_via_rm_api": True}, "YARN masters are not supported"),
    ({"track_driver_via_k8s_api": True}, "Kubernetes masters are not supported"),
    ({"spark_binary": "spark-submit-custom"}, "spark_binary must be one of"),
])
def test_arguments_it_cannot_honour_are_refused_when_the_dag_is_parsed(kwargs: dict[str, Any], refusal: str) -> None:
    with pytest.raises(ConfigurationError, match=refusal):
        SparkSubmitOperator(task_id="t", application="file:///a.py", **kwargs)


def test_durable_and_its_deprecated_alias_turn_reattaching_off() -> None:
    assert SparkSubmitOperator(task_id="t", application="a.py").reattach is True
    assert SparkSubmitOperator(task_id="t", application="a.py", durable=False).reattach is False
    with pytest.warns(DeprecationWarning, match="durable"):
        assert SparkSubmitOperator(task_id="t", application="a.py", reconnect_on_retry=False).reattach is False


def test_defaults_match_the_official_operator_and_it_defers() -> None:
    op = SparkSubmitOperator(task_id="t", application="a.py")
    assert (op.conn_id, op.name, op.poll_interval, op.deferrable) == ("spark_default", "arrow-spark", 1, True)
    assert op.result({}, "driver-1") is None  # the official operator returns None


def test_a_properties_file_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read on the Airflow worker"):
        read_properties_file(str(tmp_path / "missing.conf"))


@pytest.mark.parametrize(("kwargs", "settings", "expected"), [
    ({"openlineage_inject_parent_job_info": True}, {}, {"spark.openlineage.parentJobName": "d.submit"}),
    ({}, {"AIRFLOW__OPENLINEAGE__SPARK_INJECT_TRANSPORT_INFO": "true"}, {"spark.openlineage.transport.type": "http"}),
    ({"openlineage_inject_parent_job_info": False}, {"AIRFLOW__OPENLINEAGE__SPARK_INJECT_PARENT_JOB_INFO": "true"}, {}),
    ({}, {}, {}),
])
def test_openlineage_properties_follow_the_arguments_then_the_settings(
    kwargs: dict[str, Any], settings: dict[str, str], expected: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The official helpers (stood in for: the OpenLineage provider is not installed here) add their
    properties to the submitted request when the argument, or else the ``[openlineage]`` setting,
    says so — and nothing is injected otherwise."""
    from airflow.providers.common.compat.openlineage.utils import spark as helpers

    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(helpers, "inject_parent_job_information_into_spark_properties",
                        lambda props, context: {**props, "spark.openlineage.parentJobName": "d.submit"})
    monkeypatch.setattr(helpers, "inject_transport_information_into_spark_properties",
                        lambda props, context: {**props, "spark.openlineage.transport.type": "http"})
    op = operator_with(spark_conn(**{"deploy-mode": "cluster"}), conf={"spark.x": "1"}, **kwargs)
    conf = request_of(op).conf
    assert {k: v for k, v in conf.items() if k.startswith("spark.openlineage.")} == expected
    assert conf["spark.x"] == "1"
