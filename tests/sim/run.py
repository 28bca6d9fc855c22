"""Run many seeded schedules (in a few processes), and the command line of ``python -m tests.sim``.

Every schedule is a pure function of (backend model, seed): a failing seed replays exactly with

    .venv/bin/python -m tests.sim --backend <model> --seed <seed> --verbose

which prints the package's own log lines of that schedule, then its violations.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Sequence

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="asa-sim-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from tests.sim.backends import MODELS
from tests.sim.world import World, quiet, run_world


@dataclasses.dataclass
class Failure:
    semantics: str
    seed: int
    violations: list[str]

    @property
    def reproduce(self) -> str:
        return reproduce(self.semantics, self.seed)


@dataclasses.dataclass
class Summary:
    semantics: str
    schedules: int
    seconds: float
    failures: list[Failure]
    faults: int
    tries: int
    jobs: int
    virtual_seconds: float

    def by_invariant(self) -> collections.Counter[str]:
        return collections.Counter(v.split(":", 1)[0] for f in self.failures for v in f.violations)


def reproduce(semantics: str, seed: int) -> str:
    """The one-line command that replays one schedule with its log."""
    return f".venv/bin/python -m tests.sim --backend {semantics} --seed {seed} --verbose"


def _chunk(semantics: str, seeds: Sequence[int]) -> tuple[list[Failure], int, int, int, float]:
    failures: list[Failure] = []
    faults = tries = jobs = 0
    virtual = 0.0
    with quiet():
        for seed in seeds:
            world = run_world(World(semantics, seed))
            faults += world.faults_injected
            tries += sum(len(run.ti.tries) for run in world.runs)
            jobs += len(world.server.jobs)
            virtual += world.now()
            if world.violations:
                failures.append(Failure(semantics, seed, [str(v) for v in world.violations]))
    return failures, faults, tries, jobs, virtual


def run_schedules(semantics: str, schedules: int, *, first_seed: int = 0, processes: int = 1) -> Summary:
    """Run seeds ``first_seed .. first_seed + schedules - 1`` of one backend model."""
    seeds = list(range(first_seed, first_seed + schedules))
    started = time.perf_counter()
    if processes <= 1 or schedules < 200:
        results = [_chunk(semantics, seeds)]
    else:
        step = max(1, len(seeds) // (processes * 4))
        chunks = [seeds[i:i + step] for i in range(0, len(seeds), step)]
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
            results = list(pool.map(_chunk, [semantics] * len(chunks), chunks))
    failures = sorted((f for r in results for f in r[0]), key=lambda f: f.seed)
    return Summary(semantics, schedules, time.perf_counter() - started, failures,
                   sum(r[1] for r in results), sum(r[2] for r in results), sum(r[3] for r in results),
                   sum(r[4] for r in results))


def report(summary: Summary, *, limit: int = 20) -> str:
    lines = [
        f"{summary.semantics}: {summary.schedules} schedules in {summary.seconds:.1f}s "
        f"({summary.tries} tries, {summary.jobs} jobs, {summary.faults} faults, "
        f"{summary.virtual_seconds / 86400:.0f} virtual days); "
        f"{len(summary.failures)} with violations {dict(summary.by_invariant())}"
    ]
    for failure in summary.failures[:limit]:
        lines.append(f"  seed {failure.seed}: {failure.violations[0]}")
        lines.append(f"    reproduce: {failure.reproduce}")
    if len(summary.failures) > limit:
        lines.append(f"  ... and {len(summary.failures) - limit} more")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=[*MODELS, "all"], default="all", help="backend model")
    parser.add_argument("--schedules", type=int, default=1000, help="how many seeds to run")
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--verbose", action="store_true", help="replay one seed with the package's log")
    args = parser.parse_args(argv)
    models = list(MODELS) if args.backend == "all" else [args.backend]
    if args.verbose:
        status = 0
        for semantics in models:
            world = run_world(World(semantics, args.seed))
            print(f"--- {semantics} seed {args.seed}: plan {world.plan}", file=sys.stderr)
            for violation in world.violations:
                print(f"VIOLATION {violation}", file=sys.stderr)
                status = 1
            if not world.violations:
                print("no violation", file=sys.stderr)
        return status
    status = 0
    for semantics in models:
        summary = run_schedules(semantics, args.schedules, first_seed=args.seed, processes=args.processes)
        print(report(summary), flush=True)
        status |= bool(summary.failures)
    return status
