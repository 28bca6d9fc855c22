"""Triggerer scale: N deferred Spark jobs in one triggerer process, ours vs the official providers.

One command runs everything and rewrites the results section of docs/performance.md::

    .venv/bin/python -m bench.triggerer_scale --backends livy,databricks,emr --n 100,1000,5000 \\
        --poll 10 --end-at 60

For each backend and N: the backend's API server starts in a process of its own
(:mod:`bench.servers`) holding N jobs that all end at one moment; then, in a fresh process each
(:mod:`bench.side`), our trigger and the official provider's trigger watch those same jobs, one
after the other. Raw results go to ``bench/results/<backend>-<n>.json``; ``--report-only``
rebuilds the tables and plots from them without running anything.

Why ratios and not only absolute numbers: the machine is small and shared, so absolute figures
move with its load; two sides measured minutes apart on the same machine move together.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["Summary", "main", "parse_args", "run_point", "summarize"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:triggerer:begin -->", "<!-- bench:triggerer:end -->"
OFFICIAL = {
    "livy": "LivyTrigger (apache-livy)",
    "databricks": "DatabricksExecutionTrigger (databricks)",
    "emr": "EmrStepSensorTrigger (amazon)",
}
OURS = {"livy": "LivyBatchTrigger", "databricks": "DatabricksRunTrigger", "emr": "EmrStepsTrigger"}


# -- running -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def server_process(backend: str, n: int, workdir: Path, *, max_life: float) -> Iterator[dict[str, Any]]:
    """Start :mod:`bench.servers` and yield its info (ports, job ids) once the jobs exist."""
    info_path = workdir / f"server-{backend}-{n}.json"
    info_path.unlink(missing_ok=True)  # a stale file from an earlier run would name a dead server
    log = (workdir / f"server-{backend}-{n}.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.servers", "--backend", backend, "--n", str(n), "--info", str(info_path),
         "--max-life", str(max_life)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120 + n / 20  # creating 5,000 jobs over HTTP takes a while
        while not info_path.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"the {backend} server exited ({proc.returncode}); see {log.name}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {backend} server did not create {n} jobs in time; see {log.name}")
            time.sleep(0.2)
        yield json.loads(info_path.read_text())
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def run_side(info: dict[str, Any], side: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One side in a fresh interpreter; returns its raw measurements."""
    tag = f"{info['backend']}-{info['n']}-{side}"
    cfg = {
        "backend": info["backend"],
        "side": side,
        "job_ids": info["job_ids"],
        "warmup_id": info["warmup_id"],
        "connection": info["connection"],
        "control": info["control"],
        "poll": args.poll,
        "end_after": args.end_at,
        "phase": args.phase,
        "grace": args.grace,
        "greenback": args.greenback,
        "log_file": str(workdir / f"{tag}.log"),
        "log_level": args.log_level,
        "profile": str(workdir / f"{tag}.profile.txt") if args.profile else None,
        "options": args.ours_options.get(info["backend"], {}) if side == "ours_tuned" else {},
    }
    config, out = workdir / f"{tag}.config.json", workdir / f"{tag}.result.json"
    config.write_text(json.dumps(cfg))
    budget = 90 + args.end_at + args.poll * (1 + args.phase) + args.grace
    with (workdir / f"{tag}.stdout").open("w") as stdout:
        subprocess.run([sys.executable, "-m", "bench.side", "--config", str(config), "--out", str(out)],
                       cwd=ROOT, stdout=stdout, stderr=subprocess.STDOUT, timeout=budget, check=True)
    return dict(json.loads(out.read_text()))


def run_point(backend: str, n: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Both sides for one backend and N, on the same jobs of one server."""
    sides = [s for s in ("ours", "official") if s in args.sides]
    if backend in args.ours_options and "ours" in args.sides:
        sides.insert(1, "ours_tuned")
    budget = len(sides) * (200 + args.end_at + args.poll * 2 + args.grace) + n / 10
    point: dict[str, Any] = {"backend": backend, "n": n, "load_before": os.getloadavg()}
    with server_process(backend, n, workdir, max_life=budget) as info:
        for side in sides:
            print(f"  {backend} N={n} {side} …", flush=True)
            try:
                point[side] = run_side(info, side, args, workdir)
            except (subprocess.SubprocessError, OSError, ValueError) as exc:
                # A side that cannot finish (out of time or memory) is a result too: record it, go on.
                point.setdefault("failed", {})[side] = f"{type(exc).__name__}: {str(exc)[:300]}"
                print(f"    failed: {point['failed'][side]} (log: {workdir})", flush=True)
                continue
            s = summarize(point[side])
            print(f"    cpu {s['cpu_ms_per_poll']:.3f} ms/poll, {s['kb_per_trigger']:.1f} KB/trigger, "
                  f"p99 {s['p99']:.2f} s, stall {s['stall']:.3f} s, {s['requests']} requests, "
                  f"{s['connections']} connections, missing {s['missing']}", flush=True)
    point["load_after"] = os.getloadavg()
    return point


# -- summarizing ---------------------------------------------------------------------------------------

Summary = dict[str, Any]


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return float(ordered[k])


def summarize(raw: dict[str, Any]) -> Summary:
    """The reported metrics of one side's raw result."""
    n, poll = raw["n"], raw["poll"]
    server = raw["server"]
    # Poll rounds before the end: one at the start, then one per interval. An official trigger that
    # falls behind under load makes fewer rounds, so its figure then understates what it would ask.
    cycles = math.floor(max(0.0, raw["ended_at"] - raw["t0"]) / poll) + 1
    lat = raw["latencies"]
    return {
        "n": n,
        "cpu_s": raw["cpu_s"],
        "job_polls": raw["job_polls"],
        "cpu_ms_per_poll": 1000 * raw["cpu_s"] / max(1, raw["job_polls"]),
        "cpu_ms_per_request": 1000 * raw["cpu_s"] / max(1, server["requests"]),
        "cpu_ms_per_poll_running": (1000 * raw["cpu_s_running"] / raw["job_polls_running"]
                                    if raw.get("job_polls_running", 0) > 0 else float("nan")),
        "kb_per_trigger": (raw["rss_peak_kb"] - raw["rss_base_kb"]) / n,
        "requests": server["requests"],
        "req_per_job_min": server["requests"] / n / (raw["wall_s"] / 60),
        "req_per_job_cycle_running": server["requests_before_end"] / n / cycles,
        "connections": server["connections"],
        "p50": statistics.median(lat) if lat else float("nan"),
        "p99": _pct(lat, 0.99),
        "max_latency": max(lat) if lat else float("nan"),
        "stall": raw["max_stall_s"],
        "missing": raw["missing_events"],
        "errors": raw["task_error_count"],
        "statuses": raw["event_statuses"],
        "server_cpu_s": server.get("server_cpu_s"),
    }


# -- reporting -----------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    names = ["apache-airflow", "airflow-spark-async", "apache-airflow-providers-apache-livy",
             "apache-airflow-providers-databricks", "apache-airflow-providers-amazon", "aiohttp", "aiobotocore",
             "moto", "greenback"]
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "airflow-spark-async":
                import airflow_spark_async

                out[name] = f"{airflow_spark_async.__version__} (checkout)"
    return out


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "versions": _versions()}


def _fmt(value: float, digits: int = 2) -> str:
    if value != value:  # NaN
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(ours: float, theirs: float) -> str:
    if not theirs or theirs != theirs or ours != ours:
        return "-"
    r = ours / theirs
    return f"{r:.2f}" if r >= 0.1 else f"1/{1 / r:.0f}" if r > 0 else "0"


def tables(points: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The markdown of the results: one table per backend, rows per N and side, plus ratios."""
    lines: list[str] = []
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        by_backend.setdefault(p["backend"], []).append(p)
    for backend, pts in by_backend.items():
        pts.sort(key=lambda p: p["n"])
        lines += [f"#### {backend}: {OURS[backend]} (ours) vs {OFFICIAL[backend]}", "",
                  "| N | side | CPU ms / job-poll | CPU ms / job-poll while jobs run | CPU ms / request | "
                  "KB / trigger | requests / job / min | "
                  "requests / job / cycle (running) | TCP connections | latency p50 s | p99 s | max stall s | "
                  "missing events |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for p in pts:
            for side in ("ours", "ours_tuned", "official"):
                if side not in p:
                    continue
                s = summarize(p[side])
                label = side if side != "ours_tuned" else f"ours, {json.dumps(p[side].get('options'))}"
                lines.append(
                    f"| {p['n']:,} | {label} | {_fmt(s['cpu_ms_per_poll'], 3)} | "
                    f"{_fmt(s['cpu_ms_per_poll_running'], 3)} | {_fmt(s['cpu_ms_per_request'], 3)} | "
                    f"{_fmt(s['kb_per_trigger'], 1)} | {_fmt(s['req_per_job_min'], 3)} | "
                    f"{_fmt(s['req_per_job_cycle_running'], 3)} | {s['connections']:,} | {_fmt(s['p50'])} | "
                    f"{_fmt(s['p99'])} | {_fmt(s['stall'], 3)} | {s['missing']} |")
        lines += ["", "Ratios ours / official (lower is better for ours):", "",
                  "| N | CPU / job-poll | CPU / job-poll while jobs run | memory / trigger | requests (whole run) | "
                  "TCP connections | p99 latency | max stall |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for p in pts:
            if "ours" not in p or "official" not in p:
                continue
            o, t = summarize(p["ours"]), summarize(p["official"])
            lines.append(
                f"| {p['n']:,} | {_ratio(o['cpu_ms_per_poll'], t['cpu_ms_per_poll'])} | "
                f"{_ratio(o['cpu_ms_per_poll_running'], t['cpu_ms_per_poll_running'])} | "
                f"{_ratio(o['kb_per_trigger'], t['kb_per_trigger'])} | "
                f"{_ratio(o['requests'], t['requests'])} | "
                f"{_ratio(o['connections'], t['connections'])} | {_ratio(o['p99'], t['p99'])} | "
                f"{_ratio(o['stall'], t['stall'])} |")
        for p in pts:
            for side, why in (p.get("failed") or {}).items():
                lines.append(f"\nN={p['n']:,}, {side}: no result — {why}")
        loads = ", ".join(f"N={p['n']:,}: {p['load_before'][0]:.2f} → {p['load_after'][0]:.2f}" for p in pts)
        lines += ["", f"Load average (1 min) before → after each point: {loads}.", ""]
    m = meta["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines += [
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, Linux {m['kernel']}. "
        f"Load average at the start of the run: {meta['load_start'][0]:.2f} / {meta['load_start'][1]:.2f} / "
        f"{meta['load_start'][2]:.2f}; at the end: {meta['load_end'][0]:.2f} / {meta['load_end'][1]:.2f} / "
        f"{meta['load_end'][2]:.2f}.",
        "",
        f"Versions: {versions}.",
        "",
        f"Settings: poll interval {meta['args']['poll']} s; jobs end {meta['args']['end_at']} s + "
        f"{meta['args']['phase']} x poll after the first poll; greenback portal per trigger: "
        f"{meta['args']['greenback']}; trigger log level {meta['args']['log_level']}; run {meta['started']}.",
    ]
    return "\n".join(lines)


def plots(points: list[dict[str, Any]], outdir: Path) -> list[Path]:
    """PNG plots of each metric against N, ours vs official, one line per backend and side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [
        ("cpu_ms_per_poll", "CPU ms per job-poll", True),
        ("kb_per_trigger", "peak RSS KB per trigger", True),
        ("req_per_job_min", "API requests per job per minute", True),
        ("connections", "TCP connections opened", True),
        ("p99", "event latency p99 (s)", True),
        ("stall", "longest event-loop stall (s)", True),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    colors = {"livy": "tab:blue", "databricks": "tab:red", "emr": "tab:green"}
    backends = sorted({p["backend"] for p in points})
    for ax, (key, title, log_y) in zip(axes.flat, metrics, strict=True):
        for backend in backends:
            pts = sorted((p for p in points if p["backend"] == backend), key=lambda p: p["n"])
            for side, style in (("ours", "-o"), ("ours_tuned", ":^"), ("official", "--s")):
                xs = [p["n"] for p in pts if side in p]
                ys = [max(1e-6, float(summarize(p[side])[key])) for p in pts if side in p]
                if xs:
                    ax.plot(xs, ys, style, color=colors.get(backend, "k"), label=f"{backend} {side}")
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("concurrent triggers N")
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("One triggerer process: airflow-spark-async (solid) vs official providers (dashed)")
    fig.tight_layout()
    outdir.mkdir(parents=True, exist_ok=True)
    scale = outdir / "perf_triggerer_scale.png"
    fig.savefig(scale, dpi=90)
    plt.close(fig)
    written = [scale]

    # Timeline at the largest N: requests per second and loop stalls, both sides.
    for backend in backends:
        pts = [p for p in points if p["backend"] == backend and "ours" in p and "official" in p]
        if not pts:
            continue
        p = max(pts, key=lambda p: p["n"])
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
        for side, color in (("ours", "tab:blue"), ("official", "tab:orange")):
            raw = p[side]
            offset = raw["t0"] - raw["server"]["since"]
            per_second = raw["server"]["per_second"]
            top.plot([i - offset for i in range(len(per_second))], per_second, color=color, label=side)
            stalls = raw["stalls"]
            bottom.scatter([t for t, _ in stalls], [s for _, s in stalls], s=6, color=color, label=side)
            top.axvline(raw["ended_at"] - raw["t0"], color=color, linestyle=":", alpha=0.6)
        top.set_yscale("symlog", linthresh=1)
        top.set_ylim(bottom=0)
        top.set_ylabel("requests / second (server)")
        top.legend()
        top.set_title(f"{backend}, N={p['n']:,}: server load and event-loop stalls over time (jobs end at the "
                      "dotted line)")
        bottom.set_yscale("log")
        bottom.set_ylabel("sleep(0.05) lateness > 10 ms (s)")
        bottom.set_xlabel("seconds since the first poll")
        fig.tight_layout()
        path = outdir / f"perf_timeline_{backend}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def write_doc(points: list[dict[str, Any]], meta: dict[str, Any], images: list[Path]) -> None:
    """Replace the generated section of docs/performance.md (the prose around it is kept)."""
    pictures = "\n".join(f"![{p.stem}]({p.name})" for p in images)
    generated = f"{BEGIN}\n<!-- generated by `python -m bench.triggerer_scale`; edits here are overwritten -->\n\n" \
                f"{tables(points, meta)}\n\n{pictures}\n{END}"
    text = DOC.read_text() if DOC.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1] if END in rest else ""
    DOC.write_text(head + generated + tail)


def load_points(results: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("*-*.json")) if p.name != "meta.json"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="livy,databricks,emr", help="comma-separated: livy,databricks,emr")
    parser.add_argument("--n", default="100,1000,5000", help="comma-separated numbers of concurrent triggers")
    parser.add_argument("--poll", type=float, default=10.0, help="poll interval of every trigger (s)")
    parser.add_argument("--end-at", type=float, default=60.0, help="jobs end this long after the first poll (s)")
    parser.add_argument("--phase", type=float, default=0.5,
                        help="plus this fraction of a poll interval, so no side polls exactly at the end")
    parser.add_argument("--grace", type=float, default=120.0, help="wait this long after the end for events (s)")
    parser.add_argument("--sides", default="ours,official")
    parser.add_argument("--ours-options", type=json.loads, default={},
                        help='JSON {backend: backend_options}: also run our trigger with these options as '
                             '"ours_tuned", e.g. \'{"livy": {"page_size": 1000}}\'')
    parser.add_argument("--no-greenback", dest="greenback", action="store_false",
                        help="skip the greenback portal the triggerer gives each trigger")
    parser.add_argument("--log-level", default="INFO", help="level of the trigger log file of each side")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where raw results go")
    parser.add_argument("--logs", type=Path, default=Path(tempfile.gettempdir()) / "airflow-spark-async-bench",
                        help="where the sides' logs go (large: the official triggers log every poll)")
    parser.add_argument("--docs", type=Path, default=DOC.parent, help="where the plots go")
    parser.add_argument("--no-doc", dest="doc", action="store_false", help="do not rewrite docs/performance.md")
    parser.add_argument("--report-only", action="store_true", help="rebuild tables and plots from --results")
    parser.add_argument("--profile", action="store_true",
                        help="run each side under cProfile (hot spots in <logs>/*.profile.txt); "
                             "its CPU figures are then inflated: do not report them")
    args = parser.parse_args(argv)
    args.sides = args.sides.split(",")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)

    if not args.report_only:
        meta: dict[str, Any] = {
            "machine": machine(), "load_start": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M %Z"),
            "args": {"poll": args.poll, "end_at": args.end_at, "phase": args.phase, "greenback": args.greenback,
                     "log_level": args.log_level},
        }
        print(f"machine: {meta['machine']['nproc']} CPUs, load {meta['load_start']}", flush=True)
        workdir = args.logs  # the sides' logs and profiles, kept to read after a failure
        workdir.mkdir(parents=True, exist_ok=True)
        for backend in args.backends.split(","):
            for n in (int(x) for x in args.n.split(",")):
                point = run_point(backend, n, args, workdir)
                (args.results / f"{backend}-{n}.json").write_text(json.dumps(point))
        meta["load_end"] = os.getloadavg()
        (args.results / "meta.json").write_text(json.dumps(meta))
    meta = json.loads((args.results / "meta.json").read_text())
    points = load_points(args.results)
    images = plots(points, args.docs)
    print(tables(points, meta))
    if args.doc:
        write_doc(points, meta, images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
