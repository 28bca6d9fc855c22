"""Moved: the local Spark cluster helper is developer tooling, in :mod:`airflow_spark_async_devtools.local_cluster`.

This old path keeps working where the developer tools are installed (a checkout's editable install);
the runtime wheel does not ship them, because a provider in a production Airflow starts no JVMs.
"""

from __future__ import annotations

try:
    from airflow_spark_async_devtools.local_cluster import *  # noqa: F403
    from airflow_spark_async_devtools.local_cluster import __all__ as __all__
except ModuleNotFoundError as exc:
    raise ImportError(
        f"airflow_spark_async.standalone.local_cluster moved to airflow_spark_async_devtools.local_cluster, a "
        f"developer tool of the airflow-spark-async source repository that the wheel does not ship ({exc}). "
        "Get it from a checkout: `pip install -e '.[local]'` (or `./dev cluster start`)."
    ) from exc

if __name__ == "__main__":
    import sys

    from airflow_spark_async_devtools.local_cluster import main

    sys.exit(main())
