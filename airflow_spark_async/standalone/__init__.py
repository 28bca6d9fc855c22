"""Spark standalone backend: a real cluster through the master's REST submission API.

The REST submission server accepts unauthenticated submissions unless protected (Spark 4's
JWSFilter): never expose it beyond a trusted network.

Names are imported lazily: Airflow imports ``provider_info`` from this package while its own
configuration is still loading, so this module must not import Airflow at import time.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SparkStandaloneSubmitOperator": "operators",
    "SparkStandaloneDriverSensor": "sensors",
    "SparkStandaloneTrigger": "triggers",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
