"""``./dev stack up|down|status|run``: the shell's way to the local stack.

``up`` starts what is not running yet and returns once everything serves; the processes live on,
detached, until ``down``. State lives in one folder (``.stack/`` by default, ``$STACK_DIR`` or
``--state-dir``): ``stack.json`` (ports, options, the stack id), ``run/`` (pid and ready files),
``logs/`` (one log per component), ``spark/`` (the cluster's workdir), ``airflow/`` (AIRFLOW_HOME,
the SQLite DB, component logs), ``output/`` (what the example jobs write), ``jobs/`` (the real EMR
jobs' stdout/stderr).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from airflow_spark_async_devtools.local_cluster import LocalClusterError, LocalSparkCluster
from airflow_spark_async_devtools.local_cluster.processes import alive, signal_process, wait_gone
from airflow_spark_async_devtools.stack.config import (
    DEFAULT_PORTS,
    PORT_PURPOSES,
    ROOT,
    Ports,
    StackConfig,
    default_state_dir,
)
from airflow_spark_async_devtools.stack.procs import (
    MARKER_ENV,
    PortBusyError,
    check_ports_free,
    live_pid,
    python_module_argv,
    read_ready,
    spawn,
    stack_processes,
    sweep,
)
from airflow_spark_async_devtools.stack.serve import COMPONENTS, serve

__all__ = ["main"]

#: the ports each component binds (checked before it starts)
COMPONENT_PORTS: dict[str, tuple[str, ...]] = {
    "spark": ("spark_master", "spark_rest", "spark_ui", "spark_worker_ui"),
    "livy": ("livy",),
    "databricks": ("databricks",),
    "aws": ("aws", "moto"),
    "airflow": ("airflow", "airflow_worker_logs", "airflow_trigger_logs"),
}
#: seconds ``up`` waits for a component to serve (Airflow migrates a DB and starts four processes)
READY_TIMEOUT = {"livy": 90.0, "databricks": 90.0, "aws": 120.0, "airflow": 420.0}


def _cluster(cfg: StackConfig) -> LocalSparkCluster:
    p = cfg.ports
    return LocalSparkCluster(workdir=cfg.spark_dir, master_port=p.spark_master, rest_port=p.spark_rest,
                             ui_port=p.spark_ui, worker_ui_port=p.spark_worker_ui, worker_cores=cfg.worker_cores,
                             worker_memory=cfg.worker_memory, startup_timeout=240)


def _serve_argv(cfg: StackConfig, name: str) -> list[str]:
    return python_module_argv("airflow_spark_async_devtools.stack", "--state-dir", str(cfg.state_dir), "serve", name)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


# ---------------------------------------------------------------------- status


def _status(cfg: StackConfig) -> dict[str, dict[str, Any]]:
    """Every component: up or not, its pid(s) and addresses."""
    out: dict[str, dict[str, Any]] = {}
    spark = _cluster(cfg).status()
    out["spark"] = {
        "up": spark.healthy, "pid": [spark.master_pid, spark.worker_pid],
        "urls": {"master": f"spark://127.0.0.1:{cfg.ports.spark_master}", "rest": cfg.url("spark_rest"),
                 "ui": cfg.url("spark_ui"), "worker ui": cfg.url("spark_worker_ui")},
        "problems": [] if spark.healthy else list(spark.problems),
    }
    for name in COMPONENTS:
        pid = live_pid(cfg.run_dir / f"{name}.pid", cfg.stack_id)
        ready = read_ready(cfg.run_dir / f"{name}.json") if pid else None
        port = getattr(cfg.ports, COMPONENT_PORTS[name][0])
        entry: dict[str, Any] = {"up": bool(pid and ready and ready.get("pid") == pid), "pid": pid,
                                 "urls": {"url": f"http://127.0.0.1:{port}"}, "problems": []}
        if pid and not entry["up"]:
            entry["problems"].append("starting (not serving yet)")
        if name == "airflow" and entry["up"] and ready:
            parts = {}
            for component, cpid in (ready.get("components") or {}).items():
                running = _pid_alive(int(cpid))
                parts[component] = {"pid": cpid, "up": running}
                if not running:
                    entry["problems"].append(f"{component} (pid {cpid}) is not running")
            entry["components"] = parts
            entry["up"] = not entry["problems"]
        if name == "aws" and ready:
            entry["resources"] = {"cluster_id": ready.get("cluster_id"), "application_id": ready.get("application_id")}
        out[name] = entry
    return out


def _pid_alive(pid: int) -> bool:
    try:
        return alive(psutil.Process(pid))
    except psutil.Error:
        return False


def _print_status(cfg: StackConfig, status: dict[str, dict[str, Any]]) -> None:
    def pid_text(pid: Any) -> str:
        if isinstance(pid, list):
            return "/".join(str(p) for p in pid if p) or "-"
        return str(pid) if pid else "-"

    print(f"stack {cfg.state_dir} (id {cfg.stack_id[:8]})")
    print(f"  {'component':<16}{'state':<7}{'pid':<14}address")
    for name, entry in status.items():
        urls = entry["urls"]
        main_url = urls.get("url") or urls.get("master")
        print(f"  {name:<16}{'up' if entry['up'] else 'DOWN':<7}{pid_text(entry['pid']):<14}{main_url}")
        for label, url in urls.items():
            if label not in ("url", "master"):
                print(f"  {'':<37}{label}: {url}")
        for component, part in (entry.get("components") or {}).items():
            print(f"    {component:<14}{'up' if part['up'] else 'DOWN':<7}{part['pid']}")
        for problem in entry["problems"]:
            print(f"  {'':<16}problem: {problem}")


def _print_guide(cfg: StackConfig, status: dict[str, dict[str, Any]]) -> None:
    home = cfg.airflow_dir / "airflow_home"
    resources = status.get("aws", {}).get("resources") or {}
    print(f"""
Airflow UI and REST API  {cfg.url('airflow')}
  login: none -- SimpleAuthManager with every visitor admin (loopback only);
         a REST API token: curl -s {cfg.url('airflow')}/auth/token
  DAGs:  example_dags/{f' and {cfg.user_dags}' if cfg.user_dags else ''} (linked in {cfg.dags_dir})
  connections (AIRFLOW_CONN_* env vars): spark_standalone_default -> {cfg.url('spark_rest')},
         spark_default (type spark, for SparkSubmitOperator) -> spark://127.0.0.1:{cfg.ports.spark_master},
         livy_default -> {cfg.url('livy')}, aws_default -> {cfg.url('aws')},
         databricks_default -> {cfg.url('databricks')}
  the airflow CLI against it: source {home}/env.sh && airflow dags list
EMR resources the examples name: cluster {resources.get('cluster_id', '?')}, \
EMR Serverless application {resources.get('application_id', '?')}
Run a DAG and wait for it:  ./dev stack run livy_sum_of_squares
Logs: {cfg.log_dir}/<component>.log; Airflow's: {cfg.airflow_dir}/component_logs, task logs {home}/logs
Stop everything:  ./dev stack down""")


def cmd_status(cfg: StackConfig | None, as_json: bool) -> int:
    if cfg is None:
        print("no stack here (./dev stack up starts one)")
        return 1
    status = _status(cfg)
    if as_json:
        print(json.dumps({"state_dir": str(cfg.state_dir), "ports": cfg.ports.to_dict(), "components": status},
                         indent=2))
    else:
        _print_status(cfg, status)
    return 0 if all(entry["up"] for entry in status.values()) else 1


# ---------------------------------------------------------------------- up


def _new_config(args: argparse.Namespace, state_dir: Path) -> StackConfig:
    ports = (Ports.free() if args.free_ports else DEFAULT_PORTS).with_overrides(args.port or [])
    dags = args.dags or os.environ.get("STACK_DAGS")
    user_dags = Path(dags).expanduser().resolve() if dags else None
    if user_dags is not None and not user_dags.is_dir():
        raise SystemExit(f"error: DAG folder {user_dags} (--dags / $STACK_DAGS) is not a directory")
    return StackConfig(state_dir=state_dir, stack_id=uuid.uuid4().hex, ports=ports, user_dags=user_dags,
                       job_seconds=args.job_seconds, parallelism=args.parallelism)


def cmd_up(args: argparse.Namespace, state_dir: Path) -> int:
    began = time.monotonic()
    existing = StackConfig.load(state_dir)
    if existing is not None and any(e["pid"] and e["pid"] != [None, None] for e in _status(existing).values()):
        cfg = existing
        print(f"==> a stack runs in {state_dir}: starting only what is down (its ports and options stay)")
    else:
        cfg = _new_config(args, state_dir)
        shutil.rmtree(cfg.jobs_dir, ignore_errors=True)  # a new stack: the last one's job logs would mislead
    os.environ[MARKER_ENV] = cfg.stack_id  # inherited by every process the stack starts (procs.py)

    status = _status(cfg)
    todo = [name for name in ("spark", *COMPONENTS) if not status[name]["pid"] or status[name]["pid"] == [None, None]]
    wanted = {port: (getattr(cfg.ports, port), PORT_PURPOSES[port]) for name in todo for port in COMPONENT_PORTS[name]}
    try:
        check_ports_free(wanted)
    except PortBusyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cfg.save()
    for sub in (cfg.run_dir, cfg.log_dir):
        sub.mkdir(parents=True, exist_ok=True)

    procs = {}
    for name in COMPONENTS:
        if name in todo:
            (cfg.run_dir / f"{name}.json").unlink(missing_ok=True)
            procs[name] = spawn(name, _serve_argv(cfg, name), log=cfg.log_dir / f"{name}.log",
                                pid_file=cfg.run_dir / f"{name}.pid", env=os.environ, cwd=ROOT)
            print(f"==> starting {name} (pid {procs[name].pid}, log {cfg.log_dir / f'{name}.log'})")
    try:
        if "spark" in todo:
            print("==> starting the Spark standalone cluster")
            _cluster(cfg).start()
        for name, proc in procs.items():
            deadline = time.monotonic() + READY_TIMEOUT[name]
            while read_ready(cfg.run_dir / f"{name}.json") is None:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {proc.returncode}:\n"
                                       f"{_tail(cfg.log_dir / f'{name}.log')}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not serve within {READY_TIMEOUT[name]:.0f}s:\n"
                                       f"{_tail(cfg.log_dir / f'{name}.log')}")
                time.sleep(0.5)
            print(f"    {name} serves ({time.monotonic() - began:.0f}s)")
    except (RuntimeError, LocalClusterError, KeyboardInterrupt) as err:
        print(f"error: {err}\n==> stopping what was started", file=sys.stderr)
        cmd_down(cfg)
        return 1
    status = _status(cfg)
    print(f"==> stack up in {time.monotonic() - began:.0f}s")
    _print_status(cfg, status)
    _print_guide(cfg, status)
    return 0 if all(entry["up"] for entry in status.values()) else 1


# ---------------------------------------------------------------------- down


def cmd_down(cfg: StackConfig | None, timeout: float = 40.0) -> int:
    if cfg is None:
        print("no stack here: nothing to stop")
        return 0
    stopped = []
    leaders = []
    for name in COMPONENTS:
        pid = live_pid(cfg.run_dir / f"{name}.pid", cfg.stack_id)
        if pid is not None:
            proc = psutil.Process(pid)
            signal_process(proc, signal.SIGTERM)  # all at once: their shutdowns overlap
            leaders.append(proc)
            stopped.append(f"{name} (pid {pid})")
    for proc in wait_gone(leaders, time.monotonic() + timeout):
        signal_process(proc, signal.SIGKILL)
    try:
        if _cluster(cfg).stop():
            stopped.append("spark cluster")
    except LocalClusterError as err:
        print(f"warning: {err}", file=sys.stderr)
    swept = sweep(cfg.stack_id)
    for name in COMPONENTS:
        for suffix in ("pid", "json"):
            (cfg.run_dir / f"{name}.{suffix}").unlink(missing_ok=True)
    left = stack_processes(cfg.stack_id)
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}"
          + (f"; and {len(swept)} stray process(es) {swept}" if swept else ""))
    if left:
        print(f"error: still running: {[p.pid for p in left]}", file=sys.stderr)
        return 1
    print("nothing of the stack is left running")
    return 0


# ---------------------------------------------------------------------- run


def _api(client: Any, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
    """One REST call, retried for 30 s on 5xx and transport errors: SQLite makes a busy api-server
    answer "database is locked" now and then. Writes are safe to retry here: a dag run is created
    with its own run id, so a repeated POST is a 409, not a second run."""
    import httpx

    deadline = time.monotonic() + 30
    while True:
        try:
            resp = client.request(method, path, **kwargs)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        else:
            if resp.status_code in ok or resp.status_code < 500 or time.monotonic() > deadline:
                return resp
        time.sleep(1)


def cmd_run(cfg: StackConfig | None, dag_id: str, conf: dict[str, Any], timeout: float) -> int:
    """Trigger ``dag_id`` through the REST API, wait for the run to end, print its task states."""
    import httpx

    if cfg is None:
        print("no stack here (./dev stack up starts one)", file=sys.stderr)
        return 2
    base = cfg.url("airflow")
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as client:
        token = _api(client, "GET", "/auth/token").json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        deadline = time.monotonic() + 120
        while (dag := _api(client, "GET", f"/api/v2/dags/{dag_id}")).status_code == 404:
            if time.monotonic() > deadline:
                errors = _api(client, "GET", "/api/v2/importErrors").json().get("import_errors", [])
                print(f"DAG {dag_id} not found; import errors: {json.dumps(errors, indent=2)[:4000]}", file=sys.stderr)
                return 2
            time.sleep(2)
        dag.raise_for_status()
        if dag.json().get("is_paused"):
            _api(client, "PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
        run_id = f"stack__{time.strftime('%Y%m%dT%H%M%S')}_{uuid.uuid4().hex[:6]}"
        # A logical date of now, as the UI's trigger form fills in: DAGs templating {{ ds }} need one
        # (livy_migrated_from_official), and Airflow 3 leaves it empty for runs triggered without.
        logical_date = datetime.datetime.now(datetime.timezone.utc).isoformat()
        body = {"dag_run_id": run_id, "logical_date": logical_date, "conf": conf}
        resp = _api(client, "POST", f"/api/v2/dags/{dag_id}/dagRuns", ok=(200, 409), json=body)
        if resp.status_code not in (200, 409):
            resp.raise_for_status()
        print(f"==> {dag_id}: run {run_id} triggered ({base}/dags/{dag_id}/runs/{run_id})")
        began = time.monotonic()
        seen: dict[str, str] = {}
        state = "queued"
        while time.monotonic() - began < timeout:
            run = _api(client, "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            state = run.json()["state"] if run.status_code == 200 else state
            tis = _api(client, "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
            if tis.status_code == 200:
                for ti in tis.json()["task_instances"]:
                    key = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
                    if ti["state"] and seen.get(key) != ti["state"]:
                        seen[key] = ti["state"]
                        print(f"    {time.monotonic() - began:5.0f}s  {key}: {ti['state']}", flush=True)
            if state in ("success", "failed"):
                break
            time.sleep(2)
        print(f"==> {dag_id}: {state} after {time.monotonic() - began:.0f}s")
        return 0 if state == "success" else 1


# ---------------------------------------------------------------------- entry point


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="./dev stack", description="A local stack to try any DAG on: Spark "
                                     "standalone cluster, Livy/AWS/Databricks emulators, a real Airflow.")
    parser.add_argument("--state-dir", type=Path, default=None, help="default $STACK_DIR or <repo>/.stack")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything (in the background) and print the addresses")
    up.add_argument("--dags", help="your own DAG folder, next to example_dags/ (or $STACK_DAGS)")
    up.add_argument("--port", action="append", metavar="NAME=PORT",
                    help=f"move one port; NAME one of {', '.join(PORT_PURPOSES)}")
    up.add_argument("--free-ports", action="store_true", help="take free ports instead of the fixed ones (tests)")
    up.add_argument("--job-seconds", type=float, default=10.0,
                    help="how long an emulated job runs when it cannot run on the local cluster (default 10)")
    up.add_argument("--parallelism", type=int, default=4, help="LocalExecutor worker slots (default 4)")
    sub.add_parser("down", help="stop everything the stack started")
    status = sub.add_parser("status", help="each component up/down with its pid and address (exit 1 if any is down)")
    status.add_argument("--json", action="store_true")
    run = sub.add_parser("run", help="trigger a DAG through the REST API and wait for its run to end")
    run.add_argument("dag_id")
    run.add_argument("--conf", default="{}", help="the run's conf, as JSON")
    run.add_argument("--timeout", type=float, default=600.0)
    serve_cmd = sub.add_parser("serve", help="(internal) run one component in the foreground")
    serve_cmd.add_argument("component", choices=COMPONENTS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    state_dir = (args.state_dir.expanduser().resolve() if args.state_dir else default_state_dir())
    if args.command == "up":
        return cmd_up(args, state_dir)
    cfg = StackConfig.load(state_dir)
    if args.command == "down":
        return cmd_down(cfg)
    if args.command == "status":
        return cmd_status(cfg, args.json)
    if args.command == "run":
        return cmd_run(cfg, args.dag_id, json.loads(args.conf), args.timeout)
    if cfg is None:
        raise SystemExit(f"no stack.json in {state_dir}")
    return serve(cfg, args.component)
