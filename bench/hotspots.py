"""Where one side of the triggerer benchmark spends its CPU: py-spy samples, summed per function.

Why py-spy and not cProfile: the triggers run behind greenback portals (greenlets), which confuse
a deterministic profiler's clock, and cProfile's per-call cost inflates exactly the small,
frequent calls a poll loop is made of. py-spy samples the process from outside.

    pip install --target /tmp/pyspy py-spy   # a binary wheel; not a project dependency
    .venv/bin/python -m bench.hotspots --py-spy /tmp/pyspy/bin/py-spy --backend livy --side ours --n 1000

Only samples taken while the event loop runs triggers count (imports and the warm-up's module
loading are left out): a stack counts when it passes through ``asyncio``'s ``_run_once`` and not
through the import system.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.triggerer_scale import parse_args, server_process

__all__ = ["main", "summarize_raw"]


def summarize_raw(raw: str, top: int = 25) -> str:
    """Self and inclusive sample counts per function from py-spy's ``raw`` (collapsed) output."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if not any("_run_once" in f for f in frames) or any("_find_and_load" in f for f in frames):
            continue
        count = int(count_text)
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            incl_counts[frame] += count
    if not total:
        return "no samples in the event loop"
    out = [f"{total} samples in the event loop", "", "self time:"]
    out += [f"{100 * c / total:5.1f}%  {f}" for f, c in self_counts.most_common(top)]
    out += ["", "inclusive time (frames under asyncio):"]
    out += [f"{100 * c / total:5.1f}%  {f}" for f, c in incl_counts.most_common(top + 15)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--py-spy", required=True, help="path of the py-spy executable")
    parser.add_argument("--backend", default="livy")
    parser.add_argument("--side", default="ours", help="ours, ours_tuned or official")
    parser.add_argument("--options", type=json.loads, default={}, help="backend options of ours_tuned")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--poll", type=float, default=10.0)
    parser.add_argument("--end-at", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=None, help="also write the summary here")
    args = parser.parse_args(argv)
    bench = parse_args(["--poll", str(args.poll), "--end-at", str(args.end_at), "--grace", "60"])
    with tempfile.TemporaryDirectory(prefix="bench-hotspots-") as tmp, \
            server_process(args.backend, args.n, Path(tmp), max_life=600) as info:
        workdir = Path(tmp)
        cfg = {"backend": args.backend, "side": args.side, "job_ids": info["job_ids"], "warmup_id": info["warmup_id"],
               "connection": info["connection"], "control": info["control"], "poll": args.poll,
               "end_after": args.end_at, "phase": bench.phase, "grace": bench.grace, "greenback": True,
               "log_file": str(workdir / "side.log"), "log_level": "INFO", "options": args.options}
        config, raw = workdir / "config.json", workdir / "profile.raw"
        config.write_text(json.dumps(cfg))
        subprocess.run([args.py_spy, "record", "--format", "raw", "--rate", "250", "--output", str(raw), "--",
                        sys.executable, "-m", "bench.side", "--config", str(config), "--out", str(workdir / "r.json")],
                       check=True, timeout=600, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = json.loads((workdir / "r.json").read_text())
        text = summarize_raw(raw.read_text())
    header = (f"{args.backend} {args.side} {args.options or ''} N={args.n}: cpu {result['cpu_s']} s for "
              f"{result['job_polls']} job-polls, {result['server']['requests']} requests\n")
    print(header + text)
    if args.out:
        args.out.write_text(header + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
