"""Spark standalone backend: a real cluster through the master's REST submission API.

The REST submission server accepts unauthenticated submissions unless protected (Spark 4's
JWSFilter): never expose it beyond a trusted network.

Names are imported lazily (see :mod:`airflow_spark_async.core.lazy`).
"""

from __future__ import annotations

from airflow_spark_async.core.backend import lazy_exports

_EXPORTS = {
    "SparkStandaloneSubmitOperator": "operators",
    "SparkSubmitOperator": "spark_submit",
    "SparkStandaloneDriverSensor": "sensors",
    "SparkStandaloneTrigger": "triggers",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
