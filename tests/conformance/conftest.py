"""``harness`` is parametrized over every backend module in ``tests/conformance/backends/``.

A new backend adds one module there that defines a session fixture ``<module name>_harness``
returning a :class:`~tests.conformance.harness.Harness`; nothing else changes.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.harness import Harness

_BACKENDS_DIR = Path(__file__).parent / "backends"
BACKENDS = sorted(p.stem for p in _BACKENDS_DIR.glob("*.py") if not p.stem.startswith("_"))
for _name in BACKENDS:  # expose each backend's harness fixture to this directory's tests
    globals()[f"{_name}_harness"] = getattr(
        importlib.import_module(f"tests.conformance.backends.{_name}"), f"{_name}_harness"
    )


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    h: Harness = request.getfixturevalue(f"{request.param}_harness")
    for proxy in h.proxies:
        proxy.clear()
    yield h
    for proxy in h.proxies:
        proxy.clear()
