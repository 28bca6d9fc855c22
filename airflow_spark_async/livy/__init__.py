"""Apache Livy backend: Spark batches through Livy's REST API (``POST /batches`` and friends).

``LivyBatchOperator`` accepts every argument of the official provider's ``LivyOperator``,
``LivyBatchSensor`` every argument of its ``LivySensor``; both wait in the triggerer. See
docs/livy.md for the connection, the migration and the differences that remain.

Names are imported lazily (see :mod:`airflow_spark_async.core.lazy`).
"""

from __future__ import annotations

from airflow_spark_async.core.lazy import lazy_exports

_EXPORTS = {
    "LivyBatchOperator": "operators",
    "LivyBatchSensor": "sensors",
    "LivyBatchTrigger": "triggers",
    "LivyBackend": "backend",
    "LivyJob": "backend",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
