"""Exactly-once under a triggerer failover and under a clear, in a real Airflow 3 (issue 9).

Both scenarios run deferrable :class:`LivyBatchOperator` tasks (tests/e2e/dags/e2e_livy.py)
against the shared Livy test server, whose batches of these DAGs are *scripted* (they "run"
without Spark, so a hundred of them cost nothing but HTTP):

* **failover without cancels** — ``MAPPED`` mapped tasks are deferred, every trigger running in
  triggerer A. A is frozen (SIGSTOP) until its heartbeat is older than
  ``[triggerer] triggerer_health_check_threshold`` — the liveness rule of
  ``Trigger.assign_unassigned`` in Airflow 3.3 — so triggerer B takes every trigger over; then A
  resumes (SIGCONT), finds its triggers gone and Airflow calls ``on_kill`` on each of them
  (Airflow 3.3 cancels a moved trigger through the same "user action" path as a mark-failed;
  before 3.3 it cancels the trigger's task, and the core runs the same checks on that cancel).
  Required: not one batch is deleted, exactly ``MAPPED`` batches were ever created (none
  resubmitted), and every task succeeds in its first try (invariants I1-I3 of docs/concepts.md).
* **clear of a deferred task** — clearing a task whose batch is still running restarts it, as a
  clear does for every other Airflow task: the old batch is deleted, exactly one new batch is
  created for the new try — never while the old one still runs (I1) — and the task succeeds on
  the new batch, not on the old one (I2).

The failover's batches are held "running" by a gate the test opens once the failover is over, so
the test waits for events, never for a guessed batch length. Every wait is a poll with a generous
deadline: under load on a 2-core machine the task runs (submit + resume) dominate the time.
Deferrals last >= 20 s: Airflow 3.3.2 fails deferrals that end within ~5 s (apache/airflow#66374).
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from airflow_spark_async.core.airflow_versions import TRIGGER_ON_KILL
from tests.e2e.airflow_stack import AirflowStack
from tests.e2e.backends import HEALTH_CHECK_THRESHOLD, HELD, GatedLivyServer, db_rows, live_triggerers, set_parallelism
from tests.e2e.dags.e2e_livy import CLEAR_DAG, FAILOVER_DAG, MAPPED, TASK_ID
from tests.servers.livy_server import LivyServer, Step

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

#: what the core's on_kill logs when it leaves a moved trigger's job running, or when it cancels it
DECISION = re.compile(r"owns job (?P<left>\S+); leaving it running|cancelling job (?P<cancel>\S+)", re.IGNORECASE)
#: LocalExecutor slots while the failover's task runs queue: room for several submits at once.
FAILOVER_SLOTS = 6


@pytest.fixture(scope="module", autouse=True)
def _dags_parsed(stack: AirflowStack) -> None:
    for dag_id in (FAILOVER_DAG, CLEAR_DAG):
        stack.wait_for_dag(dag_id, timeout=180)


# -- what the DB and the Livy server say ---------------------------------------------------------


def ti_states(stack: AirflowStack, dag_id: str, run_id: str) -> Counter[str]:
    """How many task instances of the run are in each state (``none`` for not yet scheduled)."""
    rows = db_rows(stack, "SELECT state, count(*) FROM task_instance WHERE dag_id = ? AND run_id = ? "
                           "GROUP BY state", dag_id, run_id)
    return Counter({str(state or "none"): int(n) for state, n in rows})


def triggers_by_triggerer(stack: AirflowStack, dag_id: str, run_id: str) -> Counter[int | None]:
    """How many triggers of the run's deferred task instances each triggerer job holds."""
    rows = db_rows(
        stack,
        "SELECT t.triggerer_id, count(*) FROM trigger t JOIN task_instance ti ON ti.trigger_id = t.id "
        "WHERE ti.dag_id = ? AND ti.run_id = ? GROUP BY t.triggerer_id",
        dag_id, run_id,
    )
    return Counter({(None if owner is None else int(owner)): int(n) for owner, n in rows})


def batches_of(livy: LivyServer, dag_id: str) -> list[dict[str, Any]]:
    """Every batch Livy holds for the DAG's task (the operator names them ``<dag>.<task>-<key>``)."""
    prefix = f"{dag_id}.{TASK_ID}-"
    return [b for b in livy.batches() if (b["name"] or "").startswith(prefix)]


def posts_of(livy: LivyServer, dag_id: str) -> list[dict[str, Any]]:
    """Every ``POST /batches`` body for the DAG's task, in arrival order."""
    prefix = f"{dag_id}.{TASK_ID}-"
    return [body for body in list(livy.posts) if str(body.get("name", "")).startswith(prefix)]


def deletes(livy: LivyServer, since: int = 0) -> list[str]:
    """Paths of the ``DELETE /batches/{id}`` requests received after request number ``since``."""
    return [path for method, path in list(livy.requests)[since:] if method == "DELETE"]


def trigger_logs(stack: AirflowStack, dag_id: str) -> list[Path]:
    """The triggerer's part of every task log of the DAG (``…/attempt=N.log.trigger.<job>.log``)."""
    return sorted((stack.home / "logs" / f"dag_id={dag_id}").glob("**/*.log.trigger.*"))


def logs_containing(paths: Iterable[Path], needle: str | re.Pattern[str]) -> list[Path]:
    found = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if (needle.search(text) if isinstance(needle, re.Pattern) else needle in text):
            found.append(path)
    return found


def decisions(stack: AirflowStack, livy: LivyServer, seen: dict[Path, int]) -> dict[str, str]:
    """The on_kill decision logged for each of the DAG's batches: ``"left"`` running or ``"cancel"``.

    Airflow 3.3 writes them to each task's trigger log. Before 3.3 the decision is logged while the
    trigger's task is being cancelled, and Airflow 3.0 writes some of those lines only to the
    triggerer's own output: that output (past the sizes in ``seen``) is read too.
    """
    ids = {str(b["id"]) for b in batches_of(livy, FAILOVER_DAG)}
    texts = [path.read_text(errors="replace") for path in trigger_logs(stack, FAILOVER_DAG)]
    if not TRIGGER_ON_KILL:
        texts += [p.read_bytes()[seen.get(p, 0):].decode(errors="replace") for p in stack.component_logs("triggerer")]
    found: dict[str, str] = {}
    for text in texts:
        for m in DECISION.finditer(text):
            job, kind = (m["left"], "left") if m["left"] else (m["cancel"], "cancel")
            if job in ids and found.get(job) != "cancel":
                found[job] = kind
    return found


def _progress(stack: AirflowStack, livy: LivyServer, run_id: str) -> str:
    return (f"TIs {dict(ti_states(stack, FAILOVER_DAG, run_id))}, triggers "
            f"{dict(triggers_by_triggerer(stack, FAILOVER_DAG, run_id))}, POSTs {len(posts_of(livy, FAILOVER_DAG))}, "
            f"DELETEs {len(deletes(livy))}")


# -- 1. failover without cancels ----------------------------------------------------------------


def test_a_triggerer_frozen_past_its_heartbeat_hands_its_triggers_over_without_cancelling_a_batch(
    stack: AirflowStack, livy: GatedLivyServer
) -> None:
    run_id = "failover-1"
    set_parallelism(stack, FAILOVER_SLOTS)
    livy.script(Step("starting", 1.0), HELD, Step("success", 0.0, ("done",)), file=r"failover\.py$")
    requests_before = len(livy.requests)
    t0 = time.monotonic()
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        marks[name] = round(time.monotonic() - t0, 1)
        print(f"  [{marks[name]:6.1f}s] {name}: {_progress(stack, livy, run_id)}", flush=True)

    [triggerer_a] = stack.wait_until(lambda: live_triggerers(stack), timeout=60,
                                     description="triggerer A's job")
    stack.trigger_dag(FAILOVER_DAG, run_id=run_id)

    # 1. All deferred, every trigger assigned to A and running there (its first poll is logged).
    stack.wait_until(
        lambda: ti_states(stack, FAILOVER_DAG, run_id)["deferred"] == MAPPED,
        timeout=600, interval=2, description=f"{MAPPED} deferred tasks ({_progress(stack, livy, run_id)})",
    )
    mark("all deferred")
    stack.wait_until(
        lambda: triggers_by_triggerer(stack, FAILOVER_DAG, run_id) == Counter({triggerer_a: MAPPED}),
        timeout=120, interval=1, description="every trigger assigned to triggerer A",
    )
    first_poll = re.compile(r"Job \d+ is ")
    stack.wait_until(
        lambda: len(logs_containing(trigger_logs(stack, FAILOVER_DAG), first_poll)) >= MAPPED,
        timeout=180, interval=2, description="every trigger running (polled its batch) in triggerer A",
    )
    mark("all running in A")
    assert len(posts_of(livy, FAILOVER_DAG)) == MAPPED
    assert deletes(livy, requests_before) == []

    # 2. B starts beside A; A freezes until B holds every trigger.
    stack.start_triggerer("triggerer-b")
    try:
        triggerer_b = stack.wait_until(
            lambda: next((j for j in live_triggerers(stack) if j != triggerer_a), None),
            timeout=120, description="triggerer B's job",
        )
        frozen = stack.signal_component("triggerer", signal.SIGSTOP)
        assert frozen, "triggerer A has processes to freeze"
        mark("A frozen")
        stack.wait_until(
            lambda: triggers_by_triggerer(stack, FAILOVER_DAG, run_id) == Counter({triggerer_b: MAPPED}),
            timeout=HEALTH_CHECK_THRESHOLD + 180, interval=1,
            description="every trigger taken over by triggerer B",
        )
        mark("B holds all")
        # 3. A wakes up, finds its triggers gone and cancels each of them: from Airflow 3.3 through
        # on_kill (Airflow logs invoking it), before 3.3 through the CancelledError, on which the core
        # runs the same checks and logs its decision (to leave the batch running, or to cancel it).
        a_output = {path: path.stat().st_size for path in stack.component_logs("triggerer")}
        stack.signal_component("triggerer", signal.SIGCONT)
        if TRIGGER_ON_KILL:
            stack.wait_until(
                lambda: len(logs_containing(trigger_logs(stack, FAILOVER_DAG), "invoking on_kill")) >= MAPPED,
                timeout=240, interval=2, description=f"on_kill of all {MAPPED} moved triggers in triggerer A",
            )
        else:
            stack.wait_until(
                lambda: len(decisions(stack, livy, a_output)) >= MAPPED,
                timeout=240, interval=2, description=f"the cancel decision of all {MAPPED} moved triggers in A",
            )
        mark("every moved trigger cancelled in A")
        # A cancel decided by on_kill lands within Airflow's on_kill time limit of its invocation:
        # keep the batches running until every on_kill has logged a decision to leave its batch
        # alone — or, should one decide otherwise (or its words change), for that whole window — so
        # a wrong cancel would kill a running batch.
        settle_until = time.monotonic() + float(stack.env["AIRFLOW__TRIGGERER__ON_KILL_TIMEOUT"]) + 5
        while time.monotonic() < settle_until and not deletes(livy, requests_before):
            decided = decisions(stack, livy, a_output)
            if len(decided) >= MAPPED and "cancel" not in decided.values():
                break
            time.sleep(1)
        deleted_during_failover = deletes(livy, requests_before)
        mark("after every on_kill decided")

        # 4. The batches finish; B resumes every task.
        livy.release()
        state = stack.wait_for_dag_run(FAILOVER_DAG, run_id, timeout=900)
        mark(f"dag run {state}")
    finally:
        stack.signal_component("triggerer", signal.SIGCONT)
        stack.stop_component("triggerer-b")

    posts = posts_of(livy, FAILOVER_DAG)
    batches = batches_of(livy, FAILOVER_DAG)
    cancelled = deletes(livy, requests_before)
    tis = ti_states(stack, FAILOVER_DAG, run_id)
    tries = db_rows(stack, "SELECT try_number, count(*) FROM task_instance WHERE dag_id = ? AND run_id = ? "
                            "GROUP BY try_number", FAILOVER_DAG, run_id)
    print(f"\nfailover: {marks}; batches {Counter(b['state'] for b in batches)}; DELETEs {len(cancelled)}; "
          f"tries {tries}")
    a_logs = [p for p in trigger_logs(stack, FAILOVER_DAG) if p.name.endswith(f".trigger.{triggerer_a}.log")]
    print("what the moved triggers logged in triggerer A:")
    for event, n in _events(a_logs).most_common(12):
        print(f"  {n:4d} x {event}")
    assert cancelled == [], (
        f"{len(cancelled)} batches cancelled by the failover ({len(deleted_during_failover)} within the on_kill "
        f"window), e.g. {cancelled[:5]}; moved-trigger log lines:\n"
        + "\n".join(_grep(trigger_logs(stack, FAILOVER_DAG), r"cancel|on_kill|state", limit=12))
    )
    assert len(posts) == MAPPED, f"{len(posts)} batches created for {MAPPED} tasks"
    assert len({p["name"] for p in posts}) == MAPPED, "every task has its own batch, none submitted twice"
    assert Counter(b["state"] for b in batches) == Counter({"success": MAPPED}), "every batch ran to its end"
    assert tis == Counter({"success": MAPPED}), f"task states {dict(tis)}"
    assert state == "success"
    assert tries == [(1, MAPPED)], f"every task resumed in its first try, not retried: {tries}"


def _events(paths: Iterable[Path]) -> Counter[str]:
    """How often each log event (numbers blanked, cut at 100 characters) occurs in the given logs."""
    events: Counter[str] = Counter()
    for path in paths:
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError, AttributeError):
                    events[re.sub(r"\d+", "N", str(json.loads(line).get("event", "")))[:100]] += 1
    return events


def _grep(paths: Iterable[Path], pattern: str, *, limit: int) -> list[str]:
    """Up to ``limit`` matching lines (with their file's task folder) for failure messages."""
    regex = re.compile(pattern, re.IGNORECASE)
    out: list[str] = []
    for path in paths:
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                if regex.search(line):
                    out.append(f"{path.parent.name}/{path.name}: {line[:300]}")
                    if len(out) >= limit:
                        return out
    return out


# -- 2. clear of a deferred task ------------------------------------------------------------------


def test_clearing_a_deferred_task_cancels_its_batch_and_runs_exactly_one_new_one(
    stack: AirflowStack, livy: GatedLivyServer
) -> None:
    run_id = "clear-1"
    requests_before = len(livy.requests)
    posts_before = len(posts_of(livy, CLEAR_DAG))
    # The next two batches of the DAG, in submission order: the first runs until it is deleted; the
    # second — the new try's — succeeds after 20 s.
    livy.script_in_order(
        r"/clear\.py$",
        (Step("starting", 1.0), Step("running", 0.0, ("the first try's batch",))),
        (Step("starting", 1.0), Step("running", 20.0, ("the new try's batch",)), Step("success")),
    )
    stack.trigger_dag(CLEAR_DAG, run_id=run_id)
    stack.wait_for_task_state(CLEAR_DAG, run_id, TASK_ID, "deferred", timeout=180, fail_on=("failed",))
    [old] = stack.wait_until(lambda: [b for b in batches_of(livy, CLEAR_DAG) if b["state"] == "running"],
                             timeout=120, description="the first try's batch running")
    stack.wait_for_trigger_to_run(CLEAR_DAG, run_id, TASK_ID, f"Job {old['id']} is ")
    assert len(posts_of(livy, CLEAR_DAG)) == posts_before + 1

    cleared_at = len(livy.requests)
    stack.clear_task(CLEAR_DAG, run_id, [TASK_ID])
    started = time.monotonic()

    state = stack.wait_for_dag_run(CLEAR_DAG, run_id, timeout=300)
    took = time.monotonic() - started
    new_posts = posts_of(livy, CLEAR_DAG)[posts_before + 1 :]
    ti = stack.task_instance(CLEAR_DAG, run_id, TASK_ID)
    log = stack.task_log(CLEAR_DAG, run_id, TASK_ID, int(ti["try_number"] or 1))
    requests = list(livy.requests)[cleared_at:]
    print(f"\nclear: run {state} {took:.1f}s after the clear; old batch {old['id']} -> "
          f"{livy.batch_state(old['id'])}; new POSTs {len(new_posts)}; try {ti['try_number']}")

    # The old batch is cancelled (deleted while still running: its application was killed).
    assert livy.batch_state(old["id"]) == "deleted", (
        f"batch {old['id']} of the cleared try is {livy.batch_state(old['id'])!r}, not deleted; task log of "
        f"try {ti['try_number']}:\n{log[-3000:]}"
    )
    assert livy.deleted[int(old["id"])] == "killed", "it was still running when deleted"
    # Exactly one new batch, for the new try.
    assert len(new_posts) == 1, (
        f"{len(new_posts)} batches created for the new try (0 = it reattached to the cleared try's batch); "
        f"task log of try {ti['try_number']}:\n{log[-3000:]}"
    )
    [new] = [b for b in batches_of(livy, CLEAR_DAG) if b["name"] == new_posts[0]["name"]]
    assert new["id"] != old["id"] and new["name"] != old["name"]
    # I1: never two batches of the task running at once — the old one was deleted before the new POST.
    order = [(m, p) for m, p in requests if (m, p) in (("DELETE", f"/batches/{old['id']}"), ("POST", "/batches"))]
    assert order[:1] == [("DELETE", f"/batches/{old['id']}")], f"requests after the clear: {order}"
    # The task succeeded on the new batch (I2), in a new try.
    assert state == "success", log[-3000:]
    assert ti["state"] == "success" and int(ti["try_number"]) >= 2, ti
    assert new["state"] == "success", new
    assert str(stack.xcom(CLEAR_DAG, run_id, TASK_ID, "job_id")) == str(new["id"])
    assert deletes(livy, requests_before) == [f"/batches/{old['id']}"], "only the old batch deleted"
