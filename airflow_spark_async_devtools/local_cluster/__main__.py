"""``python -m airflow_spark_async_devtools.local_cluster``."""

import sys

from airflow_spark_async_devtools.local_cluster.cli import main

sys.exit(main())
