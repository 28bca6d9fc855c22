"""Databricks backend: one-time runs (``runs/submit``) and runs of saved jobs (``run-now``).

``DatabricksSubmitRunOperator`` and ``DatabricksRunNowOperator`` accept the arguments of the
official provider's operators of the same names, so a DAG migrates by changing its imports;
``DatabricksRunSensor`` waits on an existing run. All of them wait in the triggerer. Auth goes
through databricks-sdk (``pip install "airflow-spark-async[databricks]"``). See docs/databricks.md
for the connection, the migration and the differences that remain.

Names are imported lazily (see :mod:`airflow_spark_async.core.lazy`).
"""

from __future__ import annotations

from airflow_spark_async.core.backend import lazy_exports

_EXPORTS = {
    "DatabricksSubmitRunOperator": "operators",
    "DatabricksRunNowOperator": "operators",
    "DatabricksRunSensor": "sensors",
    "DatabricksRunTrigger": "triggers",
    "DatabricksBackend": "backend",
    "DatabricksRun": "request",
    "DatabricksJobRunLink": "links",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
