"""Databricks backend: one-time runs (``runs/submit``) and runs of saved jobs (``run-now``).

``DatabricksSubmitRunOperator`` and ``DatabricksRunNowOperator`` accept the arguments of the
official provider's operators of the same names, so a DAG migrates by changing its imports;
``DatabricksRunSensor`` waits on an existing run. All of them wait in the triggerer. Auth goes
through databricks-sdk (``pip install "airflow-spark-async[databricks]"``). See docs/databricks.md
for the connection, the migration and the differences that remain.

Names are imported lazily: Airflow imports ``provider_info`` from this package while its own
configuration is still loading, so this module must not import Airflow at import time.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
