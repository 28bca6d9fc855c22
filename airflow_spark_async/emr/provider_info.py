"""This backend's part of ``get_provider_info()``: its modules, links and connection form.

The EMR operators use Airflow's standard ``aws`` connection, whose type belongs to the amazon
provider: when that is installed it owns the form and the Test button (registering ``aws`` a
second time makes Airflow warn on every start), and only when it is absent — and the ``[emr]``
extra is installed — does this package register the type, so the UI can still create and test one.
"""

from __future__ import annotations

from typing import Any

from airflow_spark_async import distribution_installed

OPERATORS = ("operators",)
SENSORS = ("sensors",)
HOOKS = ("hook",)
TRIGGERS = ("triggers",)
EXTRA_LINKS = (
    "links.EmrClusterLink",
    "links.EmrLogsLink",
    "links.EmrServerlessLogsLink",
    "links.EmrServerlessDashboardLink",
)

AWS_FORM: dict[str, Any] = {
    "hook-class-name": "airflow_spark_async.emr.hook.EmrAsyncHook",
    "hook-name": "Amazon Web Services (EMR, async)",
    "connection-type": "aws",
    "ui-field-behaviour": {
        "hidden-fields": ["host", "schema", "port"],
        "relabeling": {"login": "AWS Access Key ID", "password": "AWS Secret Access Key"},
        "placeholders": {
            "login": "empty: the default credential chain (environment, instance or task role)",
            "extra": '{"region_name": "eu-west-1", "role_arn": "arn:aws:iam::123456789012:role/airflow"}',
        },
    },
}

#: not without the ``[emr]`` extra either: the hook needs aiobotocore, and a hook that cannot import
#: shows as "Error when importing hook!" in ``airflow providers hooks`` of a Livy-only install
CONNECTION_TYPES: list[dict[str, Any]] = (
    [] if distribution_installed("apache-airflow-providers-amazon") or not distribution_installed("aiobotocore")
    else [AWS_FORM]
)
