"""One side of the triggerer benchmark: N triggers of one provider, one process, one event loop.

Why a process per side: peak RSS and CPU time are process-wide, so ours and the official
triggers each get a fresh interpreter and nothing the other side imported or cached.

What it does, as Airflow's triggerer does (``TriggerRunner.run_trigger``): instantiate each
trigger from its kwargs, then run every ``trigger.run()`` as its own asyncio task (with a
greenback portal, as the triggerer sets one up, unless ``--no-greenback``), iterating the whole
generator. Connections come from ``AIRFLOW_CONN_*`` variables. Measured:

* CPU: ``time.process_time()`` (all threads) from the first poll to the last event.
* Memory: RSS peak (``VmHWM``, reset after the warm-up) minus the RSS after the warm-up, per
  trigger. The warm-up runs one trigger on an already finished job first, so lazy imports and
  the per-process caches both sides build are not charged to the N triggers.
* Job-polls: how many times a trigger asked for its job's status (see ``POLL_COUNTERS``).
* Event latency: when each trigger's first event arrived minus when the server ended the jobs.
* Loop stall: the lateness of a ticker task's ``asyncio.sleep(0.05)``.

The server side (requests, connections) is read from the server's control API after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import logging
import math
import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["TICK", "main", "make_triggers"]

TICK = 0.05
CONN_ID = "bench_api"


def _rss_kb() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            fields[key] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); ``False`` where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _http_json(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                 method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


# -- what a job-poll is, per side ----------------------------------------------------------------------

class PollCounter:
    """Counts calls of one async method — the one that asks a job's status once."""

    def __init__(self) -> None:
        self.count = 0

    def wrap(self, owner: type, name: str) -> None:
        original = getattr(owner, name)
        counter = self

        @functools.wraps(original)
        async def counted(*args: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return await original(*args, **kwargs)

        setattr(owner, name, counted)


def _install_counter(backend: str, side: str) -> PollCounter | None:
    """Job-polls are counted client-side where one method means one job's status asked once;
    ``None`` means the server's count of per-job status requests is the count (official EMR,
    whose botocore waiter has no such method)."""
    counter = PollCounter()
    if side.startswith("ours"):
        from airflow_spark_async.core.runtime import Watcher

        counter.wrap(Watcher, "status")
    elif backend == "livy":
        from airflow.providers.apache.livy.hooks.livy import LivyAsyncHook

        counter.wrap(LivyAsyncHook, "get_batch_state")
    elif backend == "databricks":
        from airflow.providers.databricks.hooks.databricks import DatabricksHook

        counter.wrap(DatabricksHook, "a_get_run_state")
    else:
        return None
    return counter


def make_triggers(backend: str, side: str, job_ids: list[str], poll: float,
                  options: dict[str, Any] | None = None) -> list[Any]:
    """The triggers a deferred operator of each provider would hand the triggerer; ``options`` are
    our trigger's backend options (``ours_tuned``)."""
    ipoll = max(1, round(poll))  # the official triggers take whole seconds
    if side.startswith("ours"):
        from airflow_spark_async.core.trigger import SparkJobTrigger

        ours: type[SparkJobTrigger]
        if backend == "livy":
            from airflow_spark_async.livy.triggers import LivyBatchTrigger as ours
        elif backend == "databricks":
            from airflow_spark_async.databricks.triggers import DatabricksRunTrigger as ours
        else:
            from airflow_spark_async.emr.triggers import EmrStepsTrigger as ours
        return [ours(conn_id=CONN_ID, job_id=j, policy={"interval": poll}, backend_options=options or {})
                for j in job_ids]
    if backend == "livy":
        from airflow.providers.apache.livy.triggers.livy import LivyTrigger

        return [LivyTrigger(batch_id=int(j), spark_params={}, livy_conn_id=CONN_ID, polling_interval=ipoll)
                for j in job_ids]
    if backend == "databricks":
        from airflow.providers.databricks.triggers.databricks import DatabricksExecutionTrigger

        return [DatabricksExecutionTrigger(run_id=int(j), databricks_conn_id=CONN_ID, polling_period_seconds=ipoll)
                for j in job_ids]
    from airflow.providers.amazon.aws.triggers.emr import EmrStepSensorTrigger

    out = []
    for j in job_ids:
        cluster, step = j.split(":", 1)
        out.append(EmrStepSensorTrigger(job_flow_id=cluster, step_id=step, waiter_delay=ipoll,
                                        waiter_max_attempts=100_000, aws_conn_id=CONN_ID))
    return out


class Ticker:
    """Measures how late ``asyncio.sleep(TICK)`` wakes up: the loop's longest stall."""

    def __init__(self) -> None:
        self.max_late = 0.0
        self.lates: list[tuple[float, float]] = []  # (seconds since start, lateness) above 10 ms
        self.rss_max = 0
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0

    def start(self) -> None:
        self._started = time.time()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        ticks = 0
        while True:
            before = loop.time()
            await asyncio.sleep(TICK)
            late = loop.time() - before - TICK
            self.max_late = max(self.max_late, late)
            if late > 0.01:
                self.lates.append((round(time.time() - self._started, 3), round(late, 4)))
            ticks += 1
            if ticks % 10 == 0:
                self.rss_max = max(self.rss_max, _rss_kb()[0])


async def _run_one(trigger: Any, greenback: bool, first_event: Callable[[Any], None]) -> None:
    """What ``TriggerRunner.run_trigger`` does with a trigger, minus the database."""
    if greenback:
        import greenback as gb

        await gb.ensure_portal()
    fired = False
    async for event in trigger.run():
        if not fired:
            fired = True
            first_event(event)
    await trigger.cleanup()


def _status_of(payload: Any) -> str:
    """The outcome an event reports; the official Databricks event carries the run state as JSON."""
    if not isinstance(payload, dict):
        return "unknown"
    if "status" in payload:
        return str(payload["status"])
    try:
        state = json.loads(payload.get("run_state") or "{}")
    except (TypeError, ValueError):
        return "unknown"
    return str(state.get("result_state") or state.get("life_cycle_state") or "unknown").lower()


async def _measure(cfg: dict[str, Any]) -> dict[str, Any]:
    backend, side, poll = cfg["backend"], cfg["side"], float(cfg["poll"])
    job_ids: list[str] = cfg["job_ids"]
    n = len(job_ids)
    control = cfg["control"]
    counter = _install_counter(backend, side)

    # Warm-up: one trigger on a finished job, so imports and per-process caches exist before measuring.
    options = cfg.get("options") or {}
    warm = make_triggers(backend, side, [cfg["warmup_id"]], poll, options)[0]
    warm_events: list[Any] = []
    await asyncio.wait_for(_run_one(warm, cfg["greenback"], warm_events.append), 60)
    del warm
    gc.collect()
    rss_base, _ = _rss_kb()
    hwm_reset = _reset_peak()

    triggers = make_triggers(backend, side, job_ids, poll, options)
    # Start on a poll-grid tick and end the jobs `phase` of an interval after one: a terminal
    # moment neither a wall-clock grid (ours) nor a start-relative schedule (theirs) gets for free.
    t0 = (math.floor(time.time() / poll) + 1) * poll
    if t0 - time.time() < 0.3:
        t0 += poll
    end_at = t0 + cfg["end_after"] + cfg["phase"] * poll
    armed = await asyncio.to_thread(_http_json, f"{control}/arm", {"end_at": end_at})
    await asyncio.sleep(max(0.0, t0 - time.time()))

    events: dict[int, tuple[float, str]] = {}
    ticker = Ticker()
    ticker.start()
    if counter:
        counter.count = 0
    cpu0, wall0 = time.process_time(), time.time()

    def recorder(i: int) -> Callable[[Any], None]:
        def record(event: Any) -> None:
            events[i] = (time.time(), _status_of(getattr(event, "payload", None)))
        return record

    at_end: dict[str, float] = {}

    def snapshot() -> None:
        """CPU and job-polls when the jobs end: what watching costs, apart from the final look-ups."""
        at_end.update(cpu=time.process_time() - cpu0, polls=counter.count if counter else -1, t=time.time())

    asyncio.get_running_loop().call_later(max(0.0, end_at - time.time()), snapshot)
    tasks = [asyncio.create_task(_run_one(t, cfg["greenback"], recorder(i)), name=f"trigger-{i}")
             for i, t in enumerate(triggers)]
    del triggers
    timeout = max(0.0, end_at - time.time()) + cfg["grace"]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    cpu1, wall1 = time.process_time(), time.time()
    await ticker.stop()
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    errors = [repr(t.exception())[:300] for t in done if t.exception() is not None]
    rss_now, hwm = _rss_kb()
    peak = max(hwm if hwm_reset else 0, ticker.rss_max, rss_now)
    stats = await asyncio.to_thread(_http_json, f"{control}/stats")
    ended_at = stats.get("ended_at") or end_at
    latencies = sorted(t - ended_at for t, _ in events.values())
    statuses: dict[str, int] = {}
    for _, status in events.values():
        statuses[status] = statuses.get(status, 0) + 1
    poll_requests = sum(stats["by_kind"].get(k, 0) for k in stats["poll_kinds"])
    job_polls = counter.count if counter else poll_requests
    polls_at_end = at_end.get("polls", -1)
    if polls_at_end < 0:  # counted server-side: the per-job status requests before the end
        polls_at_end = sum(stats["by_kind_before_end"].get(k, 0) for k in stats["poll_kinds"])
    return {
        "backend": backend,
        "side": side,
        "n": n,
        "poll": poll,
        "greenback": cfg["greenback"],
        "options": options,
        "t0": t0,
        "end_at": end_at,
        "ended_at": ended_at,
        "armed_since": armed.get("since"),
        "wall_s": round(wall1 - wall0, 3),
        "cpu_s": round(cpu1 - cpu0, 4),
        "job_polls": job_polls,
        "job_polls_counted": "client" if counter else "server",
        "cpu_s_running": round(at_end.get("cpu", float("nan")), 4),
        "job_polls_running": polls_at_end,
        "snapshot_late_s": round(at_end.get("t", float("nan")) - end_at, 3),
        "events": len(events),
        "missing_events": n - len(events),
        "event_statuses": statuses,
        "task_errors": errors[:5],
        "task_error_count": len(errors),
        "latencies": [round(x, 4) for x in latencies],
        "rss_base_kb": rss_base,
        "rss_peak_kb": peak,
        "peak_from_hwm": hwm_reset,
        "max_stall_s": round(ticker.max_late, 4),
        "stalls": ticker.lates[-2000:],
        "server": stats,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="JSON: see bench.triggerer_scale")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    cfg = json.loads(args.config.read_text())
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(cfg["connection"])
    # The triggerer logs what triggers log; INFO to a file is the cheap end of what it does.
    logging.basicConfig(filename=cfg["log_file"], level=getattr(logging, cfg.get("log_level", "INFO")),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if cfg.get("profile"):
        # cProfile slows every Python call, so a profiled run's CPU figures are not reported as results.
        import cProfile
        import io
        import pstats

        profiler = cProfile.Profile()
        result = profiler.runcall(asyncio.run, _measure(cfg))
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)
        Path(cfg["profile"]).write_text(text.getvalue())
    else:
        result = asyncio.run(_measure(cfg))
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
