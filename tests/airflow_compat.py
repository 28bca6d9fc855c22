"""Test-side names that moved between the Airflow minors the suite runs on (3.0 and 3.3)."""

from __future__ import annotations

from typing import Any


def dag_bag(path: str) -> Any:
    """Airflow's ``DagBag`` of ``path``: ``airflow.dag_processing.dagbag`` since 3.1, ``airflow.models`` in 3.0."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    return DagBag(path)  # examples stay out: tests/conftest.py sets AIRFLOW__CORE__LOAD_EXAMPLES=False
