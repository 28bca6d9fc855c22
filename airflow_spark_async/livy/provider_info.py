"""This backend's part of ``get_provider_info()``: its modules, links and connection form."""

from __future__ import annotations

from typing import Any

from airflow_spark_async import distribution_installed

OPERATORS = ("operators",)
SENSORS = ("sensors",)
HOOKS = ("hook",)
TRIGGERS = ("triggers",)
EXTRA_LINKS = ("links.LivyBatchLink", "links.LivySparkUILink", "links.LivyDriverLogLink")

#: the distribution that owns the ``livy`` connection type when it is installed
OFFICIAL_PROVIDER = "apache-airflow-providers-apache-livy"


#: The form of the ``livy`` connection type, for when no other package owns it. The operators read
#: a ``livy`` connection the same way whichever form made it; these fields are also extras there.
LIVY_FORM: dict[str, Any] = {
    "hook-class-name": "airflow_spark_async.livy.hook.LivyHook",
    "hook-name": "Apache Livy (async)",
    "connection-type": "livy",
    "ui-field-behaviour": {
        "relabeling": {
            "host": "Livy host (or full URL, e.g. https://knox:8443/gateway/default/livy/v1)",
            "schema": "Scheme (http or https)",
            "login": "Login (HTTP Basic), optional",
            "password": "Password (HTTP Basic), or a bearer token when Login is empty",
        },
        "placeholders": {"host": "livy.example.com", "port": "8998", "schema": "http"},
    },
    "conn-fields": {
        "endpoint_prefix": {
            "label": "Endpoint prefix",
            "description": "Path in front of /batches, e.g. gateway/default/livy/v1 behind Knox.",
            "schema": {"type": ["string", "null"]},
        },
        "auth_type": {
            "label": "Auth type",
            "description": "basic, bearer or none; default: basic with a login, bearer with only a password.",
            "schema": {"type": ["string", "null"], "enum": ["basic", "bearer", "none", None]},
        },
        "verify": {"label": "Verify TLS certificates", "schema": {"type": ["boolean", "null"]}},
        "timeout": {
            "label": "Request timeout (seconds)",
            "schema": {"type": ["number", "null"]},
        },
        "ui_url": {
            "label": "Livy web UI URL",
            "description": "For the 'Livy batch' link; default: the API's scheme, host, port and prefix.",
            "schema": {"type": ["string", "null"]},
        },
    },
}

#: ``livy`` is the official provider's connection type: registered a second time, Airflow keeps the
#: first package's form and warns on every start ("already registered"), and ours would replace the
#: official hook in the UI. So the form is registered only when the official provider is absent.
CONNECTION_TYPES: list[dict[str, Any]] = [] if distribution_installed(OFFICIAL_PROVIDER) else [LIVY_FORM]
