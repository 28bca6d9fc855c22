"""Conformance harness for runs of a saved Databricks job (``DatabricksRunNowOperator`` with
``job_name`` and ``python_params``), authenticated with OAuth M2M through databricks-sdk."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conformance.backends.databricks import databricks_harness_for
from tests.conformance.harness import Harness


@pytest.fixture(scope="session")
def databricks_run_now_harness() -> Iterator[Harness]:
    with databricks_harness_for("run_now") as harness:
        yield harness
