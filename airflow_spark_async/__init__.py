"""airflow-spark-async: deferrable Spark operators, sensors and triggers for Apache Airflow 3.

Submit, free the worker at once, watch thousands of jobs from one triggerer, resume exactly
once, and never lose, duplicate or orphan a job. See docs/ for the concepts.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from airflow_spark_async.core.backend import JobState
from airflow_spark_async.core.spec import SparkJob

__all__ = ["JobState", "SparkJob", "__version__", "distribution_installed", "get_provider_info"]


def distribution_installed(name: str) -> bool:
    """Whether the distribution ``name`` is installed — read from its metadata, nothing imported.

    Why: a connection type of an official provider (``livy``, ``databricks``) is registered here only
    when that provider is absent, since Airflow warns about a type registered twice on every start.
    The check runs while Airflow's own configuration loads ``get_provider_info()``, so importing
    ``airflow.providers.*`` to find out would be a circular import.
    """
    from importlib import metadata

    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


#: backend sub-packages; each has a ``provider_info`` module with ``CONNECTION_TYPES``,
#: ``EXTRA_LINKS`` and the module lists below, merged here so that a new backend is one folder.
_SECTIONS = ("operators", "sensors", "hooks", "triggers")


def get_provider_info() -> dict[str, Any]:
    """What ``airflow providers list`` and the connection form read (entry point
    ``apache_airflow_provider``). Cheap: imports only the small ``provider_info`` modules."""
    import importlib
    import pkgutil

    integration = "Apache Spark (async)"
    info: dict[str, Any] = {
        "package-name": "airflow-spark-async",
        "name": "Airflow Spark Async",
        "description": "Deferrable Spark operators, sensors and triggers: Spark standalone, Livy, EMR, Databricks.",
        "versions": [__version__],
        "integrations": [{"integration-name": integration, "external-doc-url": "https://spark.apache.org/"}],
        **{section: [] for section in _SECTIONS},
        "extra-links": [],
        "connection-types": [],
    }
    for pkg in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg and m.name != "core"):
        try:
            backend = importlib.import_module(f"{__name__}.{pkg}.provider_info")
        except ModuleNotFoundError:
            continue
        for section in _SECTIONS:
            modules = [f"{__name__}.{pkg}.{name}" for name in getattr(backend, section.upper(), ())]
            if modules:
                info[section].append({"integration-name": integration, "python-modules": modules})
        info["extra-links"] += [f"{__name__}.{pkg}.{path}" for path in backend.EXTRA_LINKS]
        info["connection-types"] += backend.CONNECTION_TYPES
    return info
