"""Worker slots: ten 30-second Spark jobs on two worker slots, deferrable vs blocking.

A real Airflow (scheduler, dag-processor, triggerer, api-server, LocalExecutor with
``parallelism=2``; :class:`tests.e2e.airflow_stack.AirflowStack`) runs the example DAGs
``spark_standalone_fan_out`` (``deferrable=True``) and ``spark_standalone_fan_out_blocking``
(``deferrable=False``) on a local Spark standalone cluster started from pyspark
(:class:`~airflow_spark_async_devtools.local_cluster.LocalSparkCluster`, one core per driver).

Reported per DAG: the makespan (the dag run's start to end, from the REST API) and the
worker-slot-seconds — the sum over task instances of the time they spent ``running``, i.e.
holding a LocalExecutor slot — sampled from the REST API every ``--sample`` seconds, as the
end-to-end test does. There is no official operator that drives the standalone master's REST
submission API, so there is no official row here.

Run: ``.venv/bin/python -m bench.worker_slots [--sleep-seconds 30]``; results go to
``bench/results/worker_slots.json`` and the worker-slot section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["main", "run_fan_out"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:slots:begin -->", "<!-- bench:slots:end -->"
DAGS = {"deferrable": "spark_standalone_fan_out", "blocking": "spark_standalone_fan_out_blocking"}


def _ts(value: str | None) -> float | None:
    return None if not value else datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_fan_out(stack: Any, dag_id: str, sleep_seconds: int, *, sample: float, timeout: float) -> dict[str, Any]:
    """Trigger one fan-out run and sample its task instances until it ends."""
    stack.wait_for_dag(dag_id)
    run_id = f"bench_{dag_id}_{int(time.time())}"
    started = time.monotonic()
    stack.trigger_dag(dag_id, run_id=run_id, conf={"sleep_seconds": sleep_seconds})
    slot_seconds = 0.0
    most_running = most_deferred = 0
    last = time.monotonic()
    timeline: list[tuple[float, int, int]] = []
    while True:
        tis = stack.task_instances(dag_id, run_id)
        now = time.monotonic()
        states = [ti["state"] for ti in tis]
        running, deferred = states.count("running"), states.count("deferred")
        slot_seconds += running * (now - last)  # the states seen now held since the previous sample
        last = now
        most_running, most_deferred = max(most_running, running), max(most_deferred, deferred)
        timeline.append((round(now - started, 2), running, deferred))
        state = stack.dag_run_state(dag_id, run_id)
        if state in ("success", "failed"):
            break
        if now - started > timeout:
            raise TimeoutError(f"{dag_id} did not finish in {timeout:.0f}s: {states}")
        time.sleep(sample)
    run = stack.get_dag_run(dag_id, run_id)
    start, end = _ts(run.get("start_date")), _ts(run.get("end_date"))
    tis = stack.task_instances(dag_id, run_id)
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "state": state,
        "makespan_s": round((end - start) if start and end else time.monotonic() - started, 1),
        "observed_s": round(time.monotonic() - started, 1),
        "worker_slot_seconds": round(slot_seconds, 1),
        "most_running": most_running,
        "most_deferred": most_deferred,
        "tasks": len(tis),
        "task_states": sorted({str(t["state"]) for t in tis}),
        "timeline": timeline,
    }


def section(result: dict[str, Any]) -> str:
    d, b = result["deferrable"], result["blocking"]
    job = result["sleep_seconds"]
    rows = [
        "| DAG | operator mode | makespan s | worker-slot-seconds | most tasks running | most tasks deferred | "
        "run state |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for mode, r in (("deferrable", d), ("blocking", b)):
        rows.append(f"| `{r['dag_id']}` | `deferrable={mode == 'deferrable'}` | {r['makespan_s']:.0f} | "
                    f"{r['worker_slot_seconds']:.0f} | {r['most_running']} | {r['most_deferred']} | {r['state']} |")
    ratio_m = d["makespan_s"] / b["makespan_s"] if b["makespan_s"] else float("nan")
    ratio_s = d["worker_slot_seconds"] / b["worker_slot_seconds"] if b["worker_slot_seconds"] else float("nan")
    return "\n".join([
        *rows,
        "",
        f"10 jobs of {job} s each, 2 LocalExecutor slots. Deferrable / blocking: makespan {ratio_m:.2f}, "
        f"worker-slot-seconds {ratio_s:.2f}. The ideal blocking makespan is 5 x {job} s = {5 * job} s "
        f"plus Spark start-up; the ideal deferrable one is about one job's time. Slot-seconds are sampled every "
        f"{result['sample']} s from the REST API. Run {result['started']}; load average before: "
        f"{result['load_before'][0]:.2f}, after: {result['load_after'][0]:.2f}.",
        "",
        "Reading it: with `deferrable=True` each mapped task holds a slot for about a second to submit its "
        "driver and again briefly to resume, so all ten drivers run at once and the makespan is one job plus "
        "the start-up of ten JVMs on two CPUs; with `deferrable=False` each task holds its slot for the whole "
        "job, two at a time.",
        "",
        "No official comparison: no official provider operator submits to the Spark standalone master's REST "
        "API; the apache-spark provider's operators run `spark-submit` inside the worker process instead.",
    ])


def write_doc(result: dict[str, Any]) -> None:
    generated = f"{BEGIN}\n<!-- generated by `python -m bench.worker_slots`; edits here are overwritten -->\n\n" \
                f"{section(result)}\n{END}"
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1] if END in rest else ""
    DOC.write_text(head + generated + tail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleep-seconds", type=int, default=30)
    parser.add_argument("--worker-cores", type=int, default=14, help="cores of the local Spark worker")
    parser.add_argument("--worker-memory", default="14g")
    parser.add_argument("--sample", type=float, default=0.5, help="seconds between task-state samples")
    parser.add_argument("--timeout", type=float, default=900.0, help="per DAG run")
    parser.add_argument("--no-doc", dest="doc", action="store_false")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    out = RESULTS / "worker_slots.json"
    if not args.report_only:
        from airflow_spark_async_devtools.local_cluster import LocalSparkCluster
        from tests.conftest import standalone_conn_json
        from tests.e2e.airflow_stack import AirflowStack

        result: dict[str, Any] = {"sleep_seconds": args.sleep_seconds, "sample": args.sample,
                                  "started": time.strftime("%Y-%m-%d %H:%M %Z"), "load_before": os.getloadavg()}
        with tempfile.TemporaryDirectory(prefix="bench-slots-") as tmp:
            root = Path(tmp)
            cluster = LocalSparkCluster.with_free_ports(root / "spark", worker_cores=args.worker_cores,
                                                        worker_memory=args.worker_memory)
            cluster.start()
            try:
                dags = root / "dags"
                shutil.copytree(ROOT / "example_dags", dags,
                                ignore=shutil.ignore_patterns("livy_*", "emr_*", "databricks_*", "__pycache__"))
                env = {
                    "AIRFLOW_CONN_SPARK_STANDALONE_DEFAULT": standalone_conn_json(
                        cluster.rest_url, cluster.ui_url, cluster.master_url),
                    "SPARK_ASYNC_OUTPUT_DIR": str(root / "output"),
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                }
                with AirflowStack(dags, parallelism=2, base_tmp_dir=root / "airflow", extra_env=env,
                                  dags_paused=False) as stack:
                    for mode in ("deferrable", "blocking"):
                        print(f"running {DAGS[mode]} …", flush=True)
                        result[mode] = run_fan_out(stack, DAGS[mode], args.sleep_seconds, sample=args.sample,
                                                   timeout=args.timeout)
                        r = result[mode]
                        print(f"  {r['state']}: makespan {r['makespan_s']} s, {r['worker_slot_seconds']} "
                              f"worker-slot-seconds, up to {r['most_deferred']} deferred", flush=True)
            finally:
                with contextlib.suppress(Exception):
                    cluster.stop()
        result["load_after"] = os.getloadavg()
        RESULTS.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result))
    result = json.loads(out.read_text())
    print(section(result))
    if args.doc:
        write_doc(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
