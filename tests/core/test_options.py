"""One parser per kind of option value, and the options base that applies them (core/options.py)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.spec import (
    BackendOptions,
    option,
    parse_bool,
    parse_float,
    parse_int,
    parse_str,
    parse_str_list,
)


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), (1, True), (0, False), ("true", True), (" Yes ", True), ("ON", True),
    ("1", True), ("false", False), ("no", False), ("Off", False), ("0", False),
])
def test_booleans_are_read_in_every_spelling_a_connection_form_produces(value: Any, expected: bool) -> None:
    assert parse_bool(value, "verify") is expected


@pytest.mark.parametrize("value", ["maybe", "", None, 2, 1.0, "/etc/ca.pem", [True]])
def test_anything_else_is_not_a_boolean_and_the_message_names_the_option(value: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"^verify must be true or false, got "):
        parse_bool(value, "verify")


def test_numbers_come_from_numbers_or_numeric_strings_within_their_bounds() -> None:
    assert parse_float("30", "timeout", gt=0) == 30.0
    assert parse_float(2, "timeout") == 2.0
    assert parse_int("12", "page_size", ge=1) == 12
    assert parse_int(3.0, "page_size") == 3
    with pytest.raises(ConfigurationError, match=r"timeout must be a number > 0, got 0"):
        parse_float(0, "timeout", gt=0)
    with pytest.raises(ConfigurationError, match=r"page_size must be an integer <= 10, got 11"):
        parse_int(11, "page_size", le=10)


@pytest.mark.parametrize("value", [True, "inf", float("nan"), "thirty", None, [1]])
def test_a_float_must_be_a_finite_number(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="timeout must be a number"):
        parse_float(value, "timeout")


@pytest.mark.parametrize("value", [True, 1.5, "1.5", "ten", None])
def test_an_int_must_be_a_whole_number(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="retries must be an integer"):
        parse_int(value, "retries")


def test_strings_and_string_lists() -> None:
    assert parse_str(" 2.2 ", "api_version", choices=("2.1", "2.2")) == "2.2"
    with pytest.raises(ConfigurationError, match=r"api_version must be one of \['2.1', '2.2'\]"):
        parse_str("3.0", "api_version", choices=("2.1", "2.2"))
    with pytest.raises(ConfigurationError, match="must be a non-empty string"):
        parse_str("  ", "region_name")
    assert parse_str_list(("a", 1), "jars") == ["a", "1"]
    assert parse_str_list(None, "jars") == []
    assert parse_str_list("a.jar, b.jar,", "jars", comma_separated=True) == ["a.jar", "b.jar"]
    with pytest.raises(ConfigurationError, match="jars must be a list of strings, not the string"):
        parse_str_list("a.jar b.jar", "jars")
    with pytest.raises(ConfigurationError, match="jars must be a list of strings, got dict"):
        parse_str_list({"a": 1}, "jars")


@dataclasses.dataclass(frozen=True)
class _Options(BackendOptions):
    what: ClassVar[str] = "Test backend options"

    retry_limit: int = option(3, ge=1)
    retry_delay: float = option(1.0, gt=0)
    verify_ssl: bool = True
    api_version: str = option("2.2", choices=("2.1", "2.2"))
    cluster_id: str | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    anything: Any = None


def test_options_are_converted_by_their_type_hints() -> None:
    opts = _Options.from_options({"retry_limit": "5", "retry_delay": "0.5", "verify_ssl": "false",
                                  "cluster_id": "j-1", "tags": ("a",), "headers": {"X": "1"}, "anything": object})
    assert (opts.retry_limit, opts.retry_delay, opts.verify_ssl, opts.cluster_id) == (5, 0.5, False, "j-1")
    assert opts.tags == ["a"] and opts.headers == {"X": "1"} and opts.anything is object
    assert _Options.from_options(None) == _Options()


def test_an_unknown_option_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"Test backend options: unknown option\(s\) \['retry_limt'\]; "
                                                 r"known: \['anything', 'api_version', "):
        _Options.from_options({"retry_limt": 2})


@pytest.mark.parametrize(("options", "message"), [
    ({"retry_limit": 0}, "Test backend options: retry_limit must be an integer >= 1, got 0"),
    ({"retry_delay": "soon"}, "Test backend options: retry_delay must be a number, got 'soon'"),
    ({"verify_ssl": "sometimes"}, "Test backend options: verify_ssl must be true or false"),
    ({"api_version": "3"}, "Test backend options: api_version must be one of"),
    ({"headers": ["X"]}, "Test backend options: headers must be a mapping"),
    ({"retry_limit": None}, "Test backend options: retry_limit must be an integer, got None"),
])
def test_a_bad_value_fails_with_a_message_that_names_the_option(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _Options.from_options(options)


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ConfigurationError, match="retry_delay must be a number > 0"):
        _Options(retry_delay=-1)


def test_to_dict_is_json_safe_and_can_leave_the_defaults_out() -> None:
    opts = _Options.from_options({"retry_limit": 4, "tags": ["x"]})
    assert json.loads(json.dumps(opts.to_dict())) == opts.to_dict()
    assert opts.to_dict(defaults=False) == {"retry_limit": 4, "tags": ["x"]}
    assert _Options.from_options(opts.to_dict(defaults=False)) == opts
