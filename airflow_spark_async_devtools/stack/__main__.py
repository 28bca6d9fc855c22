"""``python -m airflow_spark_async_devtools.stack up|down|status|run|serve`` (what ``./dev stack`` runs)."""

import sys

from airflow_spark_async_devtools.stack.cli import main

sys.exit(main())
