"""``serve <component>``: one component of the stack in the foreground, until SIGTERM.

``./dev stack up`` starts each of these detached (a session of its own, output to
``<state>/logs/<component>.log``). Each process writes ``<state>/run/<component>.json`` once it
serves -- what ``up`` waits for and ``status`` prints -- and removes it when it stops. One process
per component, so that ``status`` can say which one is down and a crash of one leaves the others.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from airflow_spark_async_devtools.stack.config import StackConfig
from airflow_spark_async_devtools.stack.procs import write_ready

__all__ = ["COMPONENTS", "serve"]

#: the components ``serve`` runs (the Spark cluster is not one: its JVMs detach by themselves)
COMPONENTS = ("livy", "databricks", "aws", "airflow")


@contextlib.contextmanager
def _until_terminated() -> Iterator[threading.Event]:
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _hold(cfg: StackConfig, name: str, info: dict[str, Any], stop: threading.Event) -> None:
    ready = cfg.run_dir / f"{name}.json"
    write_ready(ready, info)
    print(f"{name} ready: {info}", flush=True)
    try:
        stop.wait()
    finally:
        ready.unlink(missing_ok=True)
        print(f"{name} stopping", flush=True)


def serve(cfg: StackConfig, name: str) -> int:
    """Run component ``name`` of the stack described by ``cfg`` until SIGTERM; the exit code."""
    master = f"spark://127.0.0.1:{cfg.ports.spark_master}"
    with _until_terminated() as stop:
        if name == "livy":
            from airflow_spark_async_devtools.stack.emulators import StackLivyServer

            with StackLivyServer(port=cfg.ports.livy, spark_master=master, job_seconds=cfg.job_seconds) as livy:
                _hold(cfg, name, {"url": livy.url}, stop)
        elif name == "databricks":
            from airflow_spark_async_devtools.stack.emulators import databricks_server

            with databricks_server(port=cfg.ports.databricks, job_seconds=cfg.job_seconds) as server:
                _hold(cfg, name, {"url": server.url, "client_id": server.client_id, "pat": server.pat}, stop)
        elif name == "aws":
            from airflow_spark_async_devtools.stack.emulators import (
                EXAMPLE_APPLICATION,
                EXAMPLE_CLUSTER,
                StackAws,
            )

            with StackAws(port=cfg.ports.aws, moto_port=cfg.ports.moto, job_seconds=cfg.job_seconds,
                          spark_master=master, jobs_dir=cfg.jobs_dir) as aws:
                _hold(cfg, name, {"url": aws.url, "moto_url": aws.endpoint, "cluster_id": EXAMPLE_CLUSTER,
                                  "application_id": EXAMPLE_APPLICATION}, stop)
        elif name == "airflow":
            from airflow_spark_async_devtools.stack.airflow import build_airflow

            airflow = build_airflow(cfg)
            began = time.monotonic()
            with airflow:
                components = {c.name: c.pid for c in airflow.components.values()}
                _hold(cfg, name, {"url": airflow.api_url, "components": components,
                                  "home": str(airflow.home), "logs": str(airflow.component_log_dir),
                                  "startup_seconds": round(time.monotonic() - began, 1)}, stop)
        else:
            raise SystemExit(f"unknown component {name!r}: one of {', '.join(COMPONENTS)}")
    return 0
