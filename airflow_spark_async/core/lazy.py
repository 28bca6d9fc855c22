"""Lazy package exports, for backend packages that Airflow imports while its configuration loads.

Airflow imports each backend's ``provider_info`` module from inside its own configuration
bootstrap, which imports the backend *package* first. A package ``__init__`` that imported its
operators would import Airflow half-initialised; so packages export their public names through
this ``__getattr__`` instead, and nothing is imported until a name is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``name`` from ``package.<exports[name]>`` on first use."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
