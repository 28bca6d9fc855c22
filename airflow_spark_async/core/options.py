"""Moved into :mod:`airflow_spark_async.core.spec`; this path stays so that existing imports keep working."""

from airflow_spark_async.core.spec import (
    BackendOptions,
    option,
    parse_bool,
    parse_float,
    parse_int,
    parse_str,
    parse_str_list,
)

__all__ = ["BackendOptions", "option", "parse_bool", "parse_float", "parse_int", "parse_str", "parse_str_list"]
