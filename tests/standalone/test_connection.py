"""The ``spark_standalone`` connection, parsed once: what its extras mean and what is refused."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from airflow.sdk import Connection

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.standalone.hook import StandaloneSettings


def settings(**extra: Any) -> StandaloneSettings:
    conn = Connection(conn_id="sa", conn_type="spark_standalone", host="m", extra=json.dumps(extra))
    return StandaloneSettings.from_connection(conn)


def test_the_defaults_name_the_masters_usual_ports() -> None:
    s = settings()
    assert (s.rest_url, s.ui_url, s.master_url) == ("http://m:6066", "http://m:8080", "spark://m:7077")
    assert s.http.verify_ssl is True


@pytest.mark.parametrize(("value", "verify"), [(False, False), ("false", False), ("off", False), ("No", False),
                                                ("0", False), (True, True), ("yes", True), (None, True), ("", True)])
def test_verify_ssl_reads_every_spelling_of_a_boolean(value: Any, verify: bool) -> None:
    assert settings(verify_ssl=value).http.verify_ssl is verify


def test_a_verify_ssl_that_is_not_a_boolean_is_refused_instead_of_guessed() -> None:
    with pytest.raises(ConfigurationError, match="verify_ssl must be true or false"):
        settings(verify_ssl="flase")


def test_an_unknown_extra_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown extra"):
        settings(ui_ulr="http://m:8080")


def _test_button(conn_type: str, **fields: Any) -> tuple[bool, str]:
    """What Airflow's Test button does: the form's values as an unsaved connection, exposed to hooks
    through its environment variable, tested through the hook its type registered."""
    from airflow.models.connection import Connection as FormConnection

    conn = FormConnection(conn_id="test_button", conn_type=conn_type, **fields)
    os.environ["AIRFLOW_CONN_TEST_BUTTON"] = conn.get_uri()
    try:
        return conn.test_connection()
    finally:
        del os.environ["AIRFLOW_CONN_TEST_BUTTON"]


def test_the_test_button_reaches_the_master_and_its_rest_server(spark_cluster: Any) -> None:
    rest = spark_cluster.rest_url.split("://", 1)[1]
    host, port = rest.rsplit(":", 1)
    extra = json.dumps({"ui_url": spark_cluster.ui_url, "master_url": spark_cluster.master_url})
    ok, message = _test_button("spark_standalone", host=host, port=int(port), extra=extra)
    assert ok, message
    assert "is ALIVE with 1 worker(s)" in message and spark_cluster.rest_url in message


def test_the_test_button_says_how_to_enable_rest_submissions_when_given_the_rpc_port(spark_cluster: Any) -> None:
    """The master's RPC port (7077, where spark-submit's ``--master spark://`` goes) takes no REST
    submissions: the message says so, and how to enable the REST server."""
    host, rpc_port = spark_cluster.master_url.split("://", 1)[1].rsplit(":", 1)
    extra = json.dumps({"ui_url": spark_cluster.ui_url, "master_url": spark_cluster.master_url})
    ok, message = _test_button("spark_standalone", host=host, port=int(rpc_port), extra=extra)
    assert not ok
    assert "spark.master.rest.enabled=true" in message and "6066" in message
