"""``python -m airflow_spark_async_devtools.local_cluster start|stop|status``: the shell's way in."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from airflow_spark_async_devtools.local_cluster.cluster import (
    DEFAULT_WORKDIR,
    ClusterStatus,
    LocalClusterError,
    LocalSparkCluster,
)

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"pid files, logs, driver work dirs (default: {DEFAULT_WORKDIR})",
    )
    # Port/size options default to None so that a cluster recorded in the workdir keeps its settings;
    # the effective defaults are the dataclass defaults shown in the help.
    common.add_argument("--master-port", type=int, help="master RPC port (default 7077)")
    common.add_argument("--rest-port", type=int, help="REST submission port (default 6066)")
    common.add_argument("--ui-port", type=int, help="master web UI port (default 8090: 8080 is Airflow's api-server)")
    common.add_argument("--worker-ui-port", type=int, help="worker web UI port (default 8081)")
    common.add_argument(
        "--worker-cores",
        type=int,
        help="cores the worker offers; each cluster-mode driver takes 1 (default 2)",
    )
    common.add_argument("--worker-memory", help="memory the worker offers (default 2g)")
    common.add_argument("--timeout", type=float, help="seconds to wait for start (default 120)")
    common.add_argument("--json", action="store_true", help="print the status as JSON")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    parser = argparse.ArgumentParser(
        prog="python -m airflow_spark_async_devtools.local_cluster",
        description="Start/stop a local Spark standalone cluster (loopback only, unauthenticated REST!).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("start", parents=[common], help="start (or report the already running) cluster")
    sub.add_parser("stop", parents=[common], help="stop the cluster and every driver it runs")
    sub.add_parser("status", parents=[common], help="exit 0 if healthy, 1 otherwise")
    return parser


def _print_status(status: ClusterStatus, as_json: bool, headline: str) -> None:
    if as_json:
        print(json.dumps(status.to_dict(), indent=2))
        return
    print(headline)
    if status.running:
        print(f"  master     {status.master_url}  (pid {status.master_pid}, state {status.master_state})")
        print(f"  REST       {status.rest_url}  (ready: {status.rest_ready})")
        print(f"  master UI  {status.ui_url}")
        workers = f"pid {status.worker_pid}, alive workers {status.alive_workers}"
        print(f"  worker UI  {status.worker_ui_url}  ({workers})")
        print(f"  spark      {status.spark_version}")
    print(f"  workdir    {status.workdir}  (master.log, worker.log, work/<driver-id>/stdout|stderr)")
    for problem in status.problems:
        print(f"  problem:   {problem}")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    try:
        cluster = LocalSparkCluster.from_workdir(
            args.workdir,
            master_port=args.master_port,
            rest_port=args.rest_port,
            ui_port=args.ui_port,
            worker_ui_port=args.worker_ui_port,
            worker_cores=args.worker_cores,
            worker_memory=args.worker_memory,
            startup_timeout=args.timeout,
        )
        if args.command == "start":
            began = time.monotonic()
            status = cluster.start()
            headline = (
                "Spark standalone cluster already running"
                if status.already_running
                else f"Spark standalone cluster started in {time.monotonic() - began:.1f}s"
            )
            _print_status(status, args.json, headline)
            return 0
        if args.command == "stop":
            stopped = cluster.stop()
            print("stopped" if stopped else f"nothing was running in {cluster.workdir}")
            return 0
        status = cluster.status()
        headline = "healthy" if status.healthy else ("running but unhealthy" if status.running else "not running")
        _print_status(status, args.json, f"Spark standalone cluster {headline}")
        return 0 if status.healthy else 1
    except LocalClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
