"""The main job (``./dev demo``): a real Spark cluster, a real Airflow, one DAG end to end.

1. start a Spark standalone cluster on 127.0.0.1 from the pyspark wheel;
2. start Airflow 3 (api-server, scheduler, dag-processor, triggerer; LocalExecutor, SQLite);
3. run ``spark_standalone_sum_of_squares``: the operator submits a PySpark job and defers, the
   triggerer watches it, the task resumes, and ``check_result`` checks the job's output against
   n(n+1)(2n+1)/6;
4. print where the result is and what it is, then stop everything.

Everything lives under ``.demo/`` in the repository (removed and made anew on each run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airflow_spark_async_devtools.local_cluster import LocalSparkCluster  # noqa: E402
from tests.e2e.airflow_stack import AirflowStack  # noqa: E402

DAG_ID = "spark_standalone_sum_of_squares"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="sum the squares of 1..n (default 1,000,000)")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".demo")
    args = parser.parse_args()

    started = time.monotonic()
    shutil.rmtree(args.workdir, ignore_errors=True)
    output_dir = args.workdir / "output"
    output_dir.mkdir(parents=True)

    print("==> starting a Spark standalone cluster on 127.0.0.1")
    with LocalSparkCluster.with_free_ports(args.workdir / "spark", worker_cores=4, worker_memory="4g") as cluster:
        print(f"    master {cluster.master_url}, REST {cluster.rest_url}, UI {cluster.ui_url}")
        conn = {
            "conn_type": "spark_standalone",
            "host": "127.0.0.1",
            "port": cluster.rest_port,
            "extra": {"ui_url": cluster.ui_url, "master_url": cluster.master_url},
        }
        env = {
            "AIRFLOW_CONN_SPARK_STANDALONE_DEFAULT": json.dumps(conn),
            "SPARK_ASYNC_OUTPUT_DIR": str(output_dir),
        }
        print("==> starting Airflow: api-server, scheduler, dag-processor, triggerer (LocalExecutor, SQLite)")
        with AirflowStack(
            ROOT / "example_dags", parallelism=2, base_tmp_dir=args.workdir / "airflow", extra_env=env
        ) as stack:
            print(f"    api-server {stack.api_url} (started in {stack.timings.get('startup.total')}s)")
            stack.wait_for_dag(DAG_ID)
            stack.unpause(DAG_ID)
            run_id = f"demo__{int(time.time())}"
            print(f"==> triggering {DAG_ID} (run {run_id}, n={args.n})")
            stack.trigger_dag(DAG_ID, run_id=run_id, conf={"n": args.n})
            deferred = stack.wait_for_task_state(DAG_ID, run_id, "sum_of_squares", {"deferred", "success"},
                                                 timeout=300)
            print(f"    sum_of_squares is {deferred['state']}: the worker slot is free while Spark computes")
            state = stack.wait_for_dag_run(DAG_ID, run_id, timeout=600)
            log = stack.task_log(DAG_ID, run_id, "sum_of_squares", try_number=1)
            for line in log.splitlines():
                if any(word in line for word in ("Submitted", "is RUNNING", "is FINISHED", "succeeded")):
                    print(f"    log: {line.strip()[:160]}")
            if state != "success":
                print(stack.dump_logs())
                print(f"!! the DAG run ended {state}")
                return 1

    results = sorted(output_dir.glob("*.json"))
    if not results:
        print("!! no result file was written")
        return 1
    result = json.loads(results[0].read_text())
    n = result["n"]
    expected = n * (n + 1) * (2 * n + 1) // 6
    ok = result["sum_of_squares"] == expected
    print(f"==> result: {results[0]}")
    print(f"    sum of k^2 for k=1..{n} = {result['sum_of_squares']} "
          f"({'matches' if ok else 'DOES NOT MATCH'} n(n+1)(2n+1)/6 = {expected})")
    print(f"    word counts: {result['word_counts']}")
    print(f"==> done in {time.monotonic() - started:.0f}s; cluster and Airflow stopped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
