"""A small run of the triggerer benchmark proves the harness works; the full run is not a test.

Twenty Livy batches on the Livy test server (its own process) end together five seconds after
the first poll; ours and the official ``LivyTrigger`` (each in a fresh process) watch them with a
one-second poll. The assertions are about the harness — every measurement produced and sane —
plus the two properties that do not depend on the machine's load: coalesced polling asks far
fewer requests than one per job per poll, and the pooled session opens fewer connections.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("airflow.providers.apache.livy", reason="the official Livy provider is the comparison")

from bench.triggerer_scale import parse_args, run_point, summarize, tables

N = 20
POLL = 1.0


@pytest.mark.timeout(120)
def test_small_livy_run_produces_sane_measurements(tmp_path: Path) -> None:
    args = parse_args(["--backends", "livy", "--n", str(N), "--poll", str(POLL), "--end-at", "5", "--grace", "20",
                       "--results", str(tmp_path), "--no-doc"])
    point = run_point("livy", N, args, tmp_path)

    summaries = {side: summarize(point[side]) for side in ("ours", "official")}
    for side, s in summaries.items():
        raw = point[side]
        assert s["missing"] == 0 and s["errors"] == 0, (side, raw["task_errors"])
        assert s["statuses"] == {"success": N}, side
        assert raw["cpu_s"] > 0 and raw["job_polls"] >= N, side
        assert 0 < s["cpu_ms_per_poll"] < 100, side
        assert 0 < s["kb_per_trigger"] < 10_000, side
        assert s["requests"] > 0 and s["connections"] >= 1, side
        # Latency: the jobs end half a poll after a poll; an event within a few polls is sane.
        assert 0 <= s["p50"] <= s["p99"] < 5 * POLL, (side, raw["latencies"])
        assert 0 <= s["stall"] < 5, side
        assert raw["server"]["ended_at"] is not None, side

    ours, official = summaries["ours"], summaries["official"]
    # The official trigger asks once per job per poll while jobs run; the watcher lists them all at once.
    assert official["req_per_job_cycle_running"] > 0.8
    assert ours["req_per_job_cycle_running"] < 0.5 * official["req_per_job_cycle_running"]
    assert ours["connections"] < official["connections"]

    meta = {"machine": {"nproc": 2, "cpu": "test", "memory_gib": 1, "kernel": "test", "versions": {}},
            "load_start": (0, 0, 0), "load_end": (0, 0, 0), "started": "now",
            "args": {"poll": POLL, "end_at": 5, "phase": 0.5, "greenback": True, "log_level": "INFO"}}
    text = tables([point], meta)
    assert "| 20 | ours |" in text and "| 20 | official |" in text
    assert not any(math.isnan(v) for v in (ours["p99"], official["p99"]))
