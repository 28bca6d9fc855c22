"""OpenLineage properties for Spark jobs, the way the official providers inject them.

The official operators add the OpenLineage parent job and transport settings to a job's Spark
properties when ``openlineage_inject_parent_job_info`` / ``openlineage_inject_transport_info`` are
true, or — when the argument is not given — when ``[openlineage] spark_inject_parent_job_info`` /
``spark_inject_transport_info`` say so. The properties come from the providers' own functions, so
they are exactly the official ones; without those functions nothing is injected, with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["inject_openlineage", "openlineage_flag"]


def openlineage_flag(value: bool | None, option: str) -> bool:
    """The argument if given, else the ``[openlineage]`` setting ``option`` (default off), as the
    official operators read it."""
    from airflow.configuration import conf as airflow_conf

    return bool(value) if value is not None else airflow_conf.getboolean("openlineage", option, fallback=False)


def inject_openlineage(conf: Mapping[str, Any], context: Context, *, parent: bool, transport: bool,
                       log: Any) -> dict[str, Any]:
    """``conf`` with the official operator's OpenLineage properties added, by its own functions."""
    conf = dict(conf)
    if not (parent or transport):
        return conf
    try:
        from airflow.providers.common.compat.openlineage.utils.spark import (
            inject_parent_job_information_into_spark_properties,
            inject_transport_information_into_spark_properties,
        )
    except ImportError:
        log.warning("OpenLineage injection asked for, but apache-airflow-providers-common-compat is missing")
        return conf
    if parent:
        conf = inject_parent_job_information_into_spark_properties(conf, context)
    if transport:
        conf = inject_transport_information_into_spark_properties(conf, context)
    return conf
