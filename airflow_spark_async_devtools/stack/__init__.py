"""``./dev stack``: everything needed to try any DAG of this provider on one machine, in the background.

Why: only the standalone example ran locally out of the box; a Livy, EMR or Databricks DAG needed
hand-written glue around the test servers. ``./dev stack up`` starts, detached from the terminal:

* the local Spark standalone cluster (:mod:`airflow_spark_async_devtools.local_cluster`);
* a Livy emulator and an AWS emulator (moto: EMR steps and clusters, EMR Serverless, S3) that run
  their jobs for real with spark-submit on that cluster whenever the application is on this
  machine, and move the others through their states on a clock; a Databricks emulator on a clock
  (:mod:`.emulators`, built on the test servers of ``tests/servers`` and ``tests/emr``);
* a real Airflow 3 -- scheduler, dag-processor, triggerer, api-server; LocalExecutor; SQLite with the
  trigger-id fix -- with example_dags/ and the user's DAG folder, and a connection per backend
  (:mod:`.airflow`, built on ``tests/e2e/airflow_stack.py``);

on fixed ports (:mod:`.config`), and prints them. ``status`` shows each component with its pid and
address, ``down`` stops every process the stack started (:mod:`.procs` says how it finds them).
This is a developer tool of the repository checkout, not part of the wheel.
"""

from airflow_spark_async_devtools.stack.cli import main
from airflow_spark_async_devtools.stack.config import DEFAULT_PORTS, Ports, StackConfig

__all__ = ["DEFAULT_PORTS", "Ports", "StackConfig", "main"]
