"""Smoke tests of the end-to-end harness (``airflow_stack.py``) against a real Airflow 3.

Why: every later e2e test of the deferrable Spark operators relies on this harness and on a few
triggerer behaviours of Airflow 3 that are easy to get wrong.  These tests pin them down with the
standard provider's sensors and a tiny probe trigger (written to a temp dir at run time and put on
``PYTHONPATH`` of every component) that records what happens *inside* the triggerer to JSON-lines
marker files:

* a deferring task goes to ``deferred`` and then succeeds, its log is readable through the API;
* LocalExecutor with PostgreSQL (or SQLite: ``E2E_DATABASE=sqlite``) works and the number of
  running tasks is bounded by ``parallelism``, while deferred tasks do not hold a worker slot;
* "mark failed" on a deferred task invokes ``BaseTrigger.on_kill()`` in the triggerer (before 3.3:
  cancels the trigger's task), and the trigger sees its task instance already ``failed`` there;
  ``AIRFLOW_CONN_*`` connections are readable from a trigger;
* a SIGKILLed triggerer (with its trigger-runner subprocess) is replaced and the trigger resumes;
* ``start_from_trigger`` works for sensors (standard and custom);
* a trigger *reassigned* to another triggerer also gets ``on_kill()`` (before 3.3: a cancel) on the
  old one, with the task instance still ``deferred``, so ``on_kill`` must check the state before
  cancelling external work.

Each step's duration is recorded and printed at the end of the module.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.triggers.base import BaseTrigger

try:
    from tests.e2e.airflow_stack import AirflowStack, e2e_database
except ImportError:  # tests/e2e imported as a rootdir-less folder
    from airflow_stack import AirflowStack, e2e_database  # type: ignore[no-redef]

# A self-test of the harness: every e2e module exercises it too, so the default run leaves it out
# (run it with `./dev test -m harness tests/e2e/test_stack_smoke.py`).
pytestmark = [pytest.mark.e2e, pytest.mark.harness]

PARALLELISM = 2
PROBE_CONN_ID = "e2e_probe_conn"
PROBE_CONN = {
    "conn_type": "http",
    "host": "probe-host.invalid",
    "login": "probe-user",
    "password": "probe-secret",
    "port": 1234,
    "extra": {"probe": "extra-value"},
}
# Airflow 3.3.2 has a scheduler race for deferrals shorter than ~5 s: every deferral here is >= 6 s.
MIN_DEFER_SECONDS = 6.0
#: what the probe records when a user acts on its task or its trigger moves: Airflow 3.3 calls
#: ``on_kill``; before 3.3 only the trigger's task is cancelled (the probe records that cancel)
KILL_EVENT = "on_kill" if hasattr(BaseTrigger, "on_kill") else "cancelled"
DAG_IDS = ("e2e_std_defer", "e2e_probe", "e2e_parallel", "e2e_defer_fanout", "e2e_sft")

PROBE_TRIGGER_MODULE = textwrap.dedent(
    '''
    """Probe trigger: records what happens inside the triggerer to JSON-lines marker files."""

    from __future__ import annotations

    import asyncio
    import json
    import os
    import time
    from collections.abc import AsyncIterator
    from pathlib import Path
    from typing import Any

    from asgiref.sync import sync_to_async

    from airflow.triggers.base import BaseTrigger, TriggerEvent


    #: Airflow 3.3 calls ``on_kill`` when a user acts on the task or the trigger moves; before 3.3
    #: only the trigger's task is cancelled, so the probe records the state it sees in that cancel
    KILL_EVENT = "on_kill" if hasattr(BaseTrigger, "on_kill") else "cancelled"


    class ProbeTrigger(BaseTrigger):
        """Waits ``min_seconds`` (and until ``gate_file`` exists), records run/on_kill/cleanup."""

        def __init__(
            self,
            marker_root: str,
            min_seconds: float = 6.0,
            gate_file: str | None = None,
            conn_id: str | None = None,
            probe_tag: str = "",
        ) -> None:
            super().__init__()
            self.marker_root = marker_root
            self.min_seconds = min_seconds
            self.gate_file = gate_file
            self.conn_id = conn_id
            self.probe_tag = probe_tag

        def serialize(self) -> tuple[str, dict[str, Any]]:
            return (
                "e2e_probe_triggers.ProbeTrigger",
                {
                    "marker_root": self.marker_root,
                    "min_seconds": self.min_seconds,
                    "gate_file": self.gate_file,
                    "conn_id": self.conn_id,
                    "probe_tag": self.probe_tag,
                },
            )

        def _record(self, event: str, **data: Any) -> None:
            ti = self.task_instance
            name = f"{ti.dag_id}.{ti.task_id}.{ti.run_id}.{ti.map_index}" if ti else "no-ti"
            record = {"event": event, "pid": os.getpid(), "ppid": os.getppid(), "time": time.time(), **data}
            with open(Path(self.marker_root) / f"{name}.jsonl", "a") as fh:
                fh.write(json.dumps(record, default=str) + "\\n")

        async def _own_state(self) -> str | None:
            """The documented-safe way: SDK call in a worker thread via sync_to_async."""
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

            ti = self.task_instance
            states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
                dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
            )
            key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"
            return states.get(ti.run_id, {}).get(key)

        def _own_state_direct(self) -> str:
            """A plain sync SDK call on the event loop thread (needs the triggerer's greenback portal)."""
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

            ti = self.task_instance
            try:
                states = RuntimeTaskInstance.get_task_states(
                    dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
                )
            except Exception as exc:
                return f"error: {type(exc).__name__}: {exc}"[:300]
            return f"ok: {states}"

        async def _probe_connection(self) -> None:
            from airflow.sdk import BaseHook

            def describe(conn: Any) -> dict[str, Any]:
                return {
                    "host": conn.host,
                    "login": conn.login,
                    "port": conn.port,
                    "password_set": bool(conn.password),
                    "extra": conn.extra_dejson,
                }

            results: dict[str, Any] = {}
            try:
                results["aget_connection"] = describe(await BaseHook.aget_connection(self.conn_id))
            except Exception as exc:
                results["aget_connection"] = f"error: {type(exc).__name__}: {exc}"
            try:
                results["sync_to_async_get_connection"] = describe(
                    await sync_to_async(BaseHook.get_connection)(self.conn_id)
                )
            except Exception as exc:
                results["sync_to_async_get_connection"] = f"error: {type(exc).__name__}: {exc}"
            try:
                results["direct_get_connection"] = describe(BaseHook.get_connection(self.conn_id))
            except Exception as exc:
                results["direct_get_connection"] = f"error: {type(exc).__name__}: {exc}"
            results["env_var_visible"] = f"AIRFLOW_CONN_{self.conn_id.upper()}" in os.environ
            self._record("connection", **results)

        async def run(self) -> AsyncIterator[TriggerEvent]:
            ti = self.task_instance
            self._record("run_started", probe_tag=self.probe_tag, try_number=ti.try_number if ti else None)
            self._record("state_in_run", state=await self._own_state(), direct=self._own_state_direct())
            if self.conn_id:
                await self._probe_connection()
            started = time.monotonic()
            try:
                while time.monotonic() - started < self.min_seconds or (
                    self.gate_file and not os.path.exists(self.gate_file)
                ):
                    await asyncio.sleep(0.5)
            except asyncio.CancelledError:
                if KILL_EVENT == "cancelled":
                    direct = self._own_state_direct()
                    self._record("cancelled", state=await self._own_state(), direct=direct)
                raise
            self._record("event_fired")
            yield TriggerEvent({"status": "success", "probe_tag": self.probe_tag, "pid": os.getpid()})

        async def on_kill(self) -> None:
            direct = self._own_state_direct()
            self._record("on_kill", state=await self._own_state(), direct=direct)

        async def cleanup(self) -> None:
            self._record("cleanup")
    '''
)

DAGS_MODULE = textwrap.dedent(
    '''
    """DAGs for tests/e2e/test_stack_smoke.py."""

    from __future__ import annotations

    import dataclasses
    import datetime
    import json
    import os
    import time
    from pathlib import Path
    from typing import Any

    from e2e_probe_triggers import ProbeTrigger

    from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
    from airflow.sdk import DAG, BaseOperator, BaseSensorOperator, task
    from airflow.triggers.base import StartTriggerArgs

    MARKER_ROOT = os.environ["E2E_MARKER_ROOT"]
    START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    IN_8_SECONDS = "{{ (macros.datetime.utcnow() + macros.timedelta(seconds=8)).isoformat() }}"


    def _worker_marker(context: Any, event: str) -> None:
        ti = context["ti"]
        name = f"{ti.dag_id}.{ti.task_id}.{ti.run_id}.{ti.map_index}.worker.jsonl"
        with open(Path(MARKER_ROOT) / name, "a") as fh:
            fh.write(json.dumps({"event": event, "pid": os.getpid(), "time": time.time()}) + "\\n")


    class ProbeDeferOperator(BaseOperator):
        """Defers to ProbeTrigger; behaviour comes from the dag run conf."""

        def __init__(self, *, slot: int = 0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.slot = slot

        def execute(self, context: Any) -> None:
            conf = context["dag_run"].conf or {}
            _worker_marker(context, "execute")
            self.defer(
                trigger=ProbeTrigger(
                    marker_root=MARKER_ROOT,
                    min_seconds=float(conf.get("min_seconds", 6)),
                    gate_file=conf.get("gate_file"),
                    conn_id=conf.get("conn_id"),
                    probe_tag=f"{context['run_id']}#{self.slot}",
                ),
                method_name="execute_complete",
            )

        def execute_complete(self, context: Any, event: Any = None) -> Any:
            _worker_marker(context, "execute_complete")
            self.log.info("probe resumed with event %s", event)
            return event


    class ProbeStartFromTriggerSensor(BaseSensorOperator):
        """Starts directly in the triggerer (no worker slot until the trigger fires)."""

        template_fields = ("probe_tag",)
        start_from_trigger = True
        start_trigger_args = StartTriggerArgs(
            trigger_cls="e2e_probe_triggers.ProbeTrigger",
            trigger_kwargs={},
            next_method="execute_complete",
            next_kwargs=None,
            timeout=None,
        )

        def __init__(self, *, probe_tag: str, min_seconds: float = 6.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.probe_tag = probe_tag
            self.start_trigger_args = dataclasses.replace(
                type(self).start_trigger_args,
                trigger_kwargs={
                    "marker_root": MARKER_ROOT,
                    "min_seconds": min_seconds,
                    "probe_tag": probe_tag,
                },
            )

        def poke(self, context: Any) -> bool:
            raise RuntimeError("must never be poked: the sensor starts from the triggerer")

        def execute(self, context: Any) -> None:
            _worker_marker(context, "execute")
            raise RuntimeError("execute() must not run: the sensor starts from the triggerer")

        def execute_complete(self, context: Any, event: Any = None) -> Any:
            _worker_marker(context, "execute_complete")
            self.log.info("start_from_trigger sensor resumed with event %s", event)
            return event


    with DAG("e2e_std_defer", schedule=None, start_date=START, catchup=False):
        wait = DateTimeSensorAsync(task_id="wait", target_time=IN_8_SECONDS)

        @task
        def after_wait() -> str:
            return "done"

        wait >> after_wait()

    with DAG("e2e_probe", schedule=None, start_date=START, catchup=False):
        ProbeDeferOperator(task_id="probe")

    with DAG("e2e_parallel", schedule=None, start_date=START, catchup=False, max_active_tasks=16):

        @task
        def sleeper(i: int) -> int:
            time.sleep(4)
            return i

        sleeper.expand(i=[0, 1, 2, 3])

    with DAG("e2e_defer_fanout", schedule=None, start_date=START, catchup=False, max_active_tasks=16):
        ProbeDeferOperator.partial(task_id="probe").expand(slot=[0, 1, 2])

    with DAG("e2e_sft", schedule=None, start_date=START, catchup=False):
        ProbeStartFromTriggerSensor(task_id="probe_sft", probe_tag="{{ run_id }}")
        DateTimeSensorAsync(
            task_id="std_sft", target_time=IN_8_SECONDS, start_from_trigger=True, end_from_trigger=True
        )
    '''
)


# ---------------------------------------------------------------------------------------------- helpers


class Report:
    """Collects step timings and findings; printed once at the end of the module."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.findings: dict[str, Any] = {}
        self._t0 = time.monotonic()

    def step(self, name: str, since: float) -> float:
        """Record ``now - since`` as step ``name`` and return now (to chain steps)."""
        now = time.monotonic()
        self.timings[name] = round(now - since, 2)
        return now


def read_markers(
    root: Path, dag_id: str, task_id: str, run_id: str, map_index: int = -1
) -> list[dict[str, Any]]:
    """Records written by ProbeTrigger (in the triggerer) for one task instance."""
    path = root / f"{dag_id}.{task_id}.{run_id}.{map_index}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_worker_markers(
    root: Path, dag_id: str, task_id: str, run_id: str, map_index: int = -1
) -> list[dict[str, Any]]:
    """Records written by the probe operators on the worker for one task instance."""
    path = root / f"{dag_id}.{task_id}.{run_id}.{map_index}.worker.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_marker(
    stack: AirflowStack,
    root: Path,
    dag_id: str,
    task_id: str,
    run_id: str,
    event: str,
    *,
    count: int = 1,
    map_index: int = -1,
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Wait until the probe trigger recorded ``event`` at least ``count`` times; return those records."""

    def found() -> list[dict[str, Any]] | None:
        records = [r for r in read_markers(root, dag_id, task_id, run_id, map_index) if r["event"] == event]
        return records if len(records) >= count else None

    return stack.wait_until(found, timeout=timeout, description=f"marker {event!r} x{count} for {task_id}")


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Largest number of simultaneously open intervals."""
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def report(request: pytest.FixtureRequest) -> Iterator[Report]:
    """Module-wide timings/findings, printed to the terminal (also without ``-s``) at the end."""
    rep = Report()
    yield rep
    lines = ["", "==== e2e smoke timings (s) ===="]
    lines += [f"  {name:<55} {value:>7.2f}" for name, value in rep.timings.items()]
    lines += ["==== e2e smoke findings ===="]
    lines += [f"  {name}: {json.dumps(value, default=str)}" for name, value in rep.findings.items()]
    # Output capturing is active during fixture teardown; suspend it so the summary reaches the terminal.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        print("\n".join(lines), flush=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Temp folder with dags/, the probe trigger module, markers/ and gates/."""
    root = tmp_path_factory.mktemp("e2e-smoke")
    for sub in ("dags", "pylib", "markers", "gates"):
        (root / sub).mkdir()
    (root / "pylib" / "e2e_probe_triggers.py").write_text(PROBE_TRIGGER_MODULE)
    (root / "dags" / "e2e_smoke_dags.py").write_text(DAGS_MODULE)
    return root


@pytest.fixture(scope="module")
def stack(workdir: Path, report: Report) -> Iterator[AirflowStack]:
    """One Airflow stack for the module (start-up is the expensive part), all DAGs parsed and unpaused."""
    pythonpath = os.pathsep.join(filter(None, [str(workdir / "pylib"), os.environ.get("PYTHONPATH", "")]))
    extra_env = {
        "PYTHONPATH": pythonpath,
        "E2E_MARKER_ROOT": str(workdir / "markers"),
        f"AIRFLOW_CONN_{PROBE_CONN_ID.upper()}": json.dumps(PROBE_CONN),
    }
    airflow = AirflowStack(
        workdir / "dags", parallelism=PARALLELISM, base_tmp_dir=workdir / "stack", extra_env=extra_env,
        database=e2e_database(),
    )
    with airflow:
        t = time.monotonic()
        for dag_id in DAG_IDS:
            airflow.wait_for_dag(dag_id)
        t = report.step("fixture.all_dags_parsed_after_startup", t)
        for dag_id in DAG_IDS:
            airflow.unpause(dag_id)
        report.step("fixture.unpause_all", t)
        report.timings.update({k: v for k, v in airflow.timings.items() if k.startswith("startup")})
        yield airflow
    report.timings["stack.stop"] = airflow.timings["stop"]
    leftovers = airflow.all_pids()
    assert leftovers == [], f"processes left behind after stop(): {leftovers}"


@pytest.fixture
def markers(workdir: Path) -> Path:
    return workdir / "markers"


@pytest.fixture
def gates(workdir: Path) -> Path:
    return workdir / "gates"


# ---------------------------------------------------------------------------------------------- tests


def test_standard_sensor_defers_then_succeeds(stack: AirflowStack, report: Report) -> None:
    """DateTimeSensorAsync (8 s) goes to deferred, the trigger fires, the task and the run succeed."""
    dag_id, run_id = "e2e_std_defer", "std-1"
    t = time.monotonic()
    stack.trigger_dag(dag_id, run_id=run_id)
    stack.wait_for_task_state(dag_id, run_id, "wait", ("running", "deferred"), fail_on=("failed",))
    assert stack.started_at is not None
    report.timings["first_task_running_since_stack_start"] = round(time.monotonic() - stack.started_at, 2)
    t = report.step("std.trigger_to_first_task_running", t)
    ti = stack.wait_for_task_state(dag_id, run_id, "wait", "deferred", fail_on=("failed",))
    t = report.step("std.to_deferred", t)
    assert ti["try_number"] == 1

    assert stack.wait_for_dag_run(dag_id, run_id, timeout=90) == "success"
    report.step("std.deferred_to_run_success", t)
    states = {
        (ti["task_id"], ti["map_index"]): (ti["state"], ti["try_number"])
        for ti in stack.task_instances(dag_id, run_id)
    }
    assert states == {("wait", -1): ("success", 1), ("after_wait", -1): ("success", 1)}

    log = stack.task_log(dag_id, run_id, "wait", 1)
    assert "Pausing task as DEFERRED" in log  # worker part
    assert "yielding event" in log  # triggerer part (trigger log file is merged in)
    assert report.timings["first_task_running_since_stack_start"] < 120


def test_parallelism_bounds_running_tasks_and_deferred_tasks_free_slots(
    stack: AirflowStack, report: Report, gates: Path
) -> None:
    """4 sleepers with parallelism=2 never run more than 2 at once; 3 deferred tasks coexist anyway."""
    gate = gates / "fanout-1"
    t = time.monotonic()
    stack.trigger_dag("e2e_defer_fanout", run_id="fanout-1", conf={"gate_file": str(gate), "min_seconds": 6})
    stack.trigger_dag("e2e_parallel", run_id="par-1")
    max_running = max_deferred = 0
    while True:
        tis = stack.task_instances("e2e_defer_fanout", "fanout-1") + stack.task_instances(
            "e2e_parallel", "par-1"
        )
        max_running = max(max_running, sum(ti["state"] == "running" for ti in tis))
        deferred = sum(ti["state"] == "deferred" for ti in tis if ti["dag_id"] == "e2e_defer_fanout")
        max_deferred = max(max_deferred, deferred)
        par_done = stack.dag_run_state("e2e_parallel", "par-1") in ("success", "failed")
        if par_done and max_deferred == 3:
            break
        if time.monotonic() - t > 120:
            raise stack.fail(
                f"parallel/fanout runs did not progress: {[(x['task_id'], x['state']) for x in tis]}"
            )
        time.sleep(0.3)
    t = report.step("parallel.sleepers_done_and_3_deferred", t)
    gate.touch()
    assert stack.wait_for_dag_run("e2e_defer_fanout", "fanout-1", timeout=90) == "success"
    report.step("parallel.fanout_released_to_success", t)
    assert stack.dag_run_state("e2e_parallel", "par-1") == "success"

    sleepers = stack.task_instances("e2e_parallel", "par-1")
    assert sorted(ti["map_index"] for ti in sleepers) == [0, 1, 2, 3]
    overlap = max_overlap([(_ts(ti["start_date"]), _ts(ti["end_date"])) for ti in sleepers])
    report.findings["parallelism"] = {
        "parallelism": PARALLELISM,
        "max_running_sampled": max_running,
        "max_sleeper_overlap": overlap,
        "max_simultaneously_deferred": max_deferred,
    }
    assert max_running <= PARALLELISM
    assert overlap == PARALLELISM  # really parallel, and never more than the slots
    assert max_deferred == 3  # deferred tasks do not hold executor slots


def test_mark_failed_while_deferred_calls_on_kill_then_clear_reruns(
    stack: AirflowStack, report: Report, markers: Path, gates: Path
) -> None:
    """PATCH new_state=failed on a deferred TI -> failed, trigger cancelled, on_kill() sees 'failed'.

    Then clearing the task runs it again as try 2 (exercises clear_task and task_log per try).
    """
    dag_id, run_id = "e2e_probe", "markfail-1"
    gate = gates / "markfail-1"  # only created before the clear, so try 1 can never finish by itself
    conf = {"gate_file": str(gate), "conn_id": PROBE_CONN_ID, "min_seconds": MIN_DEFER_SECONDS}
    t = time.monotonic()
    stack.trigger_dag(dag_id, run_id=run_id, conf=conf)
    stack.wait_for_task_state(dag_id, run_id, "probe", "deferred", fail_on=("failed",))
    [connection] = wait_marker(stack, markers, dag_id, "probe", run_id, "connection")
    [in_run] = wait_marker(stack, markers, dag_id, "probe", run_id, "state_in_run")
    t = report.step("markfail.trigger_to_trigger_running", t)

    patched = stack.mark_task_failed(dag_id, run_id, "probe")
    assert [ti["state"] for ti in patched] == ["failed"]
    t = report.step("markfail.patch_request", t)
    [on_kill] = wait_marker(stack, markers, dag_id, "probe", run_id, KILL_EVENT, timeout=30)
    t = report.step("markfail.patch_to_on_kill", t)
    wait_marker(stack, markers, dag_id, "probe", run_id, "cleanup", timeout=30)
    assert stack.wait_for_dag_run(dag_id, run_id, timeout=60) == "failed"
    t = report.step("markfail.on_kill_to_run_failed", t)

    assert stack.task_state(dag_id, run_id, "probe") == "failed"
    assert in_run["state"] == "deferred"
    assert on_kill["state"] == "failed"  # the TI is already failed when on_kill runs
    events = [r["event"] for r in read_markers(markers, dag_id, "probe", run_id)]
    assert "event_fired" not in events
    assert [r["event"] for r in read_worker_markers(markers, dag_id, "probe", run_id)] == ["execute"]

    expected = {k: PROBE_CONN[k] for k in ("host", "login", "port", "extra")} | {"password_set": True}
    assert connection["aget_connection"] == expected
    assert connection["sync_to_async_get_connection"] == expected
    assert connection["env_var_visible"] is True
    report.findings["state_seen_in_run"] = {"sync_to_async": in_run["state"], "direct_sync": in_run["direct"]}
    report.findings["state_seen_in_on_kill_after_mark_failed"] = {
        "sync_to_async": on_kill["state"],
        "direct_sync": on_kill["direct"],
    }
    report.findings["connection_in_trigger_works"] = {
        method: connection[method] == expected
        for method in ("aget_connection", "sync_to_async_get_connection", "direct_get_connection")
    }

    # --- clear -> try 2 runs, defers again and succeeds
    gate.touch()
    cleared = stack.clear_task(dag_id, run_id, ["probe"])
    assert [ti["task_id"] for ti in cleared] == ["probe"]
    ti = stack.wait_for_task_state(dag_id, run_id, "probe", "success", timeout=90, fail_on=("failed",))
    report.step("markfail.clear_to_try2_success", t)
    assert ti["try_number"] == 2
    assert stack.wait_for_dag_run(dag_id, run_id, timeout=30) == "success"
    assert "probe resumed with event" in stack.task_log(dag_id, run_id, "probe", 2)
    assert "probe resumed with event" not in stack.task_log(dag_id, run_id, "probe", 1)
    events = [r["event"] for r in read_markers(markers, dag_id, "probe", run_id)]
    assert events.count(KILL_EVENT) == 1 and events.count("run_started") == 2


def test_triggerer_sigkill_and_restart_resumes_trigger(
    stack: AirflowStack, report: Report, markers: Path, gates: Path
) -> None:
    """SIGKILL the triggerer (and its runner) while a task is deferred; a new triggerer takes over."""
    dag_id, run_id = "e2e_probe", "tkill-1"
    gate = gates / "tkill-1"
    stack.trigger_dag(dag_id, run_id=run_id, conf={"gate_file": str(gate), "min_seconds": MIN_DEFER_SECONDS})
    stack.wait_for_task_state(dag_id, run_id, "probe", "deferred", fail_on=("failed",))
    [first] = wait_marker(stack, markers, dag_id, "probe", run_id, "run_started")

    old_leader = stack.components["triggerer"].pid
    t = time.monotonic()
    killed = stack.kill_triggerer(signal.SIGKILL)
    t = report.step("tkill.sigkill_tree", t)
    assert old_leader in killed and first["pid"] in killed and first["ppid"] == old_leader
    assert not any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in killed)
    assert stack.task_state(dag_id, run_id, "probe") == "deferred"

    stack.start_triggerer()
    records = wait_marker(stack, markers, dag_id, "probe", run_id, "run_started", count=2, timeout=90)
    t = report.step("tkill.restart_to_trigger_running_again", t)
    assert records[1]["pid"] != first["pid"]
    assert records[1]["ppid"] == stack.components["triggerer"].pid

    gate.touch()
    assert stack.wait_for_dag_run(dag_id, run_id, timeout=60) == "success"
    report.step("tkill.gate_to_run_success", t)
    ti = stack.task_instance(dag_id, run_id, "probe")
    assert ti["try_number"] == 1  # resumed, not retried
    events = [r["event"] for r in read_markers(markers, dag_id, "probe", run_id)]
    assert KILL_EVENT not in events  # nobody could run it: the process was SIGKILLed
    assert [r["event"] for r in read_worker_markers(markers, dag_id, "probe", run_id)] == [
        "execute",
        "execute_complete",
    ]


def test_start_from_trigger_sensors(stack: AirflowStack, report: Report, markers: Path) -> None:
    """start_from_trigger: the scheduler defers the TI directly, no worker runs execute()."""
    dag_id, run_id = "e2e_sft", "sft-1"
    t = time.monotonic()
    stack.trigger_dag(dag_id, run_id=run_id)
    ti = stack.wait_for_task_state(dag_id, run_id, "probe_sft", "deferred", fail_on=("failed", "running"))
    t = report.step("sft.trigger_to_deferred", t)
    assert ti["hostname"] in (None, "") and ti["pid"] is None  # never on a worker
    [started] = wait_marker(stack, markers, dag_id, "probe_sft", run_id, "run_started")
    assert started["probe_tag"] == run_id  # template rendered in the triggerer
    assert stack.wait_for_dag_run(dag_id, run_id, timeout=90) == "success"
    report.step("sft.deferred_to_run_success", t)
    worker_events = [r["event"] for r in read_worker_markers(markers, dag_id, "probe_sft", run_id)]
    assert worker_events == ["execute_complete"]
    std = stack.task_instance(dag_id, run_id, "std_sft")
    assert std["state"] == "success" and std["try_number"] == 1
    report.findings["start_from_trigger"] = {
        "probe_sft_worker_calls": worker_events,
        "std_sft (end_from_trigger)": {k: std[k] for k in ("state", "try_number", "hostname", "pid")},
    }


def test_trigger_reassignment_also_calls_on_kill(
    stack: AirflowStack, report: Report, markers: Path, gates: Path
) -> None:
    """A trigger moved to another triggerer gets on_kill() on the old one while the TI is still deferred."""
    dag_id, run_id = "e2e_probe", "reassign-1"
    gate = gates / "reassign-1"
    t = time.monotonic()
    stack.start_triggerer("triggerer-b")

    def two_triggerers_alive() -> bool:
        jobs = stack.api("GET", "/api/v2/jobs", params={"job_type": "TriggererJob", "is_alive": True})["jobs"]
        return len(jobs) >= 2

    stack.wait_until(two_triggerers_alive, timeout=60, description="second triggerer heartbeating")
    t = report.step("reassign.second_triggerer_up", t)
    stack.trigger_dag(dag_id, run_id=run_id, conf={"gate_file": str(gate), "min_seconds": MIN_DEFER_SECONDS})
    [first] = wait_marker(stack, markers, dag_id, "probe", run_id, "run_started")
    owner = next(name for name, c in stack.components.items() if c.pid == first["ppid"])
    t = time.monotonic()
    stack.signal_component(owner, signal.SIGSTOP)  # looks like a hung triggerer: no heartbeats
    try:
        records = wait_marker(stack, markers, dag_id, "probe", run_id, "run_started", count=2, timeout=90)
    finally:
        stack.signal_component(owner, signal.SIGCONT)
    t = report.step("reassign.sigstop_to_trigger_adopted", t)
    assert records[1]["ppid"] != first["ppid"]

    [on_kill] = wait_marker(stack, markers, dag_id, "probe", run_id, KILL_EVENT, timeout=60)
    report.step("reassign.sigcont_to_on_kill_on_old_triggerer", t)
    assert on_kill["pid"] == first["pid"]  # the *old* triggerer cancelled it
    assert on_kill["state"] == "deferred"  # ... while the task is fine and still deferred
    report.findings["on_kill_on_reassignment"] = {"called": True, "state_seen": on_kill["state"]}

    gate.touch()
    assert stack.wait_for_dag_run(dag_id, run_id, timeout=60) == "success"
    assert stack.task_instance(dag_id, run_id, "probe")["try_number"] == 1
    stack.stop_component("triggerer-b")


def _alive(pid: int) -> bool:
    """True unless the pid is gone or a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
