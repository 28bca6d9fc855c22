"""This backend's part of ``get_provider_info()``: its modules, links and connection form.

The ``databricks`` connection type belongs to the official Databricks provider; when that is
installed it owns the form (registering a type twice makes Airflow warn on every start), and
only when it is absent does this package register the type, so the UI can still create one.
"""

from __future__ import annotations

from airflow_spark_async.databricks.compat.form import CONNECTION_TYPES

__all__ = ["CONNECTION_TYPES", "EXTRA_LINKS", "HOOKS", "OPERATORS", "SENSORS", "TRIGGERS"]

OPERATORS = ("operators",)
SENSORS = ("sensors",)
HOOKS = ("hook",)
TRIGGERS = ("triggers",)
EXTRA_LINKS = ("links.DatabricksJobRunLink",)
