"""This backend's part of ``get_provider_info()``: its modules, links and connection form."""

from __future__ import annotations

from typing import Any

OPERATORS = ("operators", "spark_submit")
SENSORS = ("sensors",)
HOOKS = ("hook",)
TRIGGERS = ("triggers",)
EXTRA_LINKS = ("links.SparkMasterUILink", "links.SparkDriverLogLink")

CONNECTION_TYPES: list[dict[str, Any]] = [
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
            "verify_ssl": {"label": "Verify TLS certificates", "schema": {"type": ["boolean", "null"]}},
            "spark_version": {
                "label": "Client Spark version",
                "description": "clientSparkVersion sent with submissions; default 4.0.0.",
                "schema": {"type": ["string", "null"]},
            },
        },
    }
]
