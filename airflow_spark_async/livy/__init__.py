"""Apache Livy backend: Spark batches through Livy's REST API, waited for in the triggerer. The
operator and sensor take the official provider's arguments (docs/livy.md). Names load lazily."""

from __future__ import annotations

from airflow_spark_async.core.backend import lazy_exports

_EXPORTS = {
    "LivyBatchOperator": "operators",
    "LivyBatchSensor": "sensors",
    "LivyBatchTrigger": "triggers",
    "LivyBackend": "backend",
    "LivyJob": "compat",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
