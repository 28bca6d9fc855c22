"""The ``aws`` connection type, for the UI's form and Test button when the amazon provider — which
owns the type — is not installed (``provider_info``); the EMR backends read the connection the
amazon provider's way either way (:func:`~airflow_spark_async.emr.compat.connection_fields`)."""

from __future__ import annotations

from airflow_spark_async.core.runtime import BackendHook
from airflow_spark_async.emr.clusters import EmrClusterBackend

__all__ = ["CONN_TYPE", "DEFAULT_CONN_ID", "EmrAsyncHook"]

CONN_TYPE = "aws"
DEFAULT_CONN_ID = "aws_default"


class EmrAsyncHook(BackendHook):
    """Registers ``aws`` only where no amazon provider does; the Test button asks EMR."""

    conn_name_attr = "aws_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Amazon Web Services (EMR, async)"

    @classmethod
    def backend_class(cls) -> type[EmrClusterBackend]:
        return EmrClusterBackend  # its probe lists the region's active clusters
