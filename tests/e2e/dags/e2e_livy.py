"""E2E-only DAGs of the Livy backend, whose batches the Livy test server runs from scripts (no Spark).

* ``e2e_livy_failover`` — ``MAPPED`` deferred tasks whose triggers all move to another triggerer;
* ``e2e_livy_clear`` — one deferred task that the test clears while its batch runs.

Every trigger polls every ``POLL_INTERVAL`` s: Airflow 3.3.2 fails deferrals that end within ~5 s
(apache/airflow#66374).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_spark_async.livy import LivyBatchOperator

FAILOVER_DAG = "e2e_livy_failover"
CLEAR_DAG = "e2e_livy_clear"
TASK_ID = "batch"
#: triggers handed over in the failover: many, so a per-trigger race shows (100 is enough for that;
#: every one costs two task runs — submit and resume — on a 2-core machine)
MAPPED = 100
POLL_INTERVAL = 5

with DAG(FAILOVER_DAG, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, max_active_tasks=256):
    LivyBatchOperator.partial(
        task_id=TASK_ID, file="local:///apps/failover.py", poll_interval=POLL_INTERVAL, deferrable=True, retries=0,
    ).expand(args=[[str(i)] for i in range(MAPPED)])

with DAG(CLEAR_DAG, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    LivyBatchOperator(task_id=TASK_ID, file="local:///apps/clear.py", poll_interval=POLL_INTERVAL,
                      deferrable=True, retries=0)
