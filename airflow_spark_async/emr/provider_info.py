"""This backend's part of ``get_provider_info()``: its modules and links.

No connection type: the EMR operators use Airflow's standard ``aws`` connection (registered
by the amazon provider when it is installed; an ``AIRFLOW_CONN_*`` URI or JSON works without it),
and registering ``aws`` here too would clash with that provider.
"""

from __future__ import annotations

from typing import Any

OPERATORS = ("operators",)
SENSORS = ("sensors",)
HOOKS = ()
TRIGGERS = ("triggers",)
EXTRA_LINKS = (
    "links.EmrClusterLink",
    "links.EmrLogsLink",
    "links.EmrServerlessLogsLink",
    "links.EmrServerlessDashboardLink",
)

CONNECTION_TYPES: list[dict[str, Any]] = []
