"""The ``spark_standalone`` connection, parsed once: what its extras mean and what is refused."""

from __future__ import annotations

import json
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
