"""airflow-spark-async: deferrable Spark operators, sensors and triggers for Apache Airflow 3.

Submit, free the worker at once, watch thousands of jobs from one triggerer, resume exactly
once, and never lose, duplicate or orphan a job. See docs/ for the concepts.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """What ``airflow providers list`` and the connection form read (entry point
    ``apache_airflow_provider``)."""
    integration = "Apache Spark (async)"
    return {
        "package-name": "airflow-spark-async",
        "name": "Airflow Spark Async",
        "description": "Deferrable Spark operators, sensors and triggers: Spark standalone, Livy, EMR, Databricks.",
        "versions": [__version__],
        "integrations": [{"integration-name": integration, "external-doc-url": "https://spark.apache.org/"}],
        "operators": [
            {"integration-name": integration, "python-modules": ["airflow_spark_async.standalone.operators"]}
        ],
        "sensors": [{"integration-name": integration, "python-modules": ["airflow_spark_async.standalone.sensors"]}],
        "hooks": [{"integration-name": integration, "python-modules": ["airflow_spark_async.standalone.hook"]}],
        "triggers": [{"integration-name": integration, "python-modules": ["airflow_spark_async.standalone.triggers"]}],
        "extra-links": [
            "airflow_spark_async.standalone.links.SparkMasterUILink",
            "airflow_spark_async.standalone.links.SparkDriverLogLink",
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_spark_async.standalone.hook.SparkStandaloneHook",
                "hook-name": "Spark Standalone (REST submission)",
                "connection-type": "spark_standalone",
                "ui-field-behaviour": {
                    "hidden-fields": ["login"],
                    "relabeling": {
                        "host": "Master host",
                        "port": "REST submission port",
                        "schema": "Scheme (http or https)",
                        "password": "Bearer token (JWSFilter), optional",
                    },
                    "placeholders": {"host": "127.0.0.1", "port": "6066", "schema": "http"},
                },
                "conn-fields": {
                    "ui_url": {
                        "label": "Master web UI URL",
                        "description": "Default http://<host>:8080; its /json/ serves coalesced polling.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "master_url": {
                        "label": "Master URL",
                        "description": "spark.master for submitted drivers; default spark://<host>:7077.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "verify_ssl": {
                        "label": "Verify TLS certificates",
                        "schema": {"type": ["boolean", "null"]},
                    },
                    "spark_version": {
                        "label": "Client Spark version",
                        "description": "clientSparkVersion sent with submissions; default 4.0.0.",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            }
        ],
    }
