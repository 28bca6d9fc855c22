"""Apache Livy backend: Spark batches through Livy's REST API (``POST /batches`` and friends).

``LivyBatchOperator`` accepts every argument of the official provider's ``LivyOperator``,
``LivyBatchSensor`` every argument of its ``LivySensor``; both wait in the triggerer. See
docs/livy.md for the connection, the migration and the differences that remain.

Names are imported lazily: Airflow imports ``provider_info`` from this package while its own
configuration is still loading, so this module must not import Airflow at import time.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LivyBatchOperator": "operators",
    "LivyBatchSensor": "sensors",
    "LivyBatchTrigger": "triggers",
    "LivyBackend": "backend",
    "LivyJob": "backend",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
