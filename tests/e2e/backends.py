"""What the e2e scenarios need to know about each backend, written once per backend.

Why: the scenarios (tests/e2e/test_scenarios_e2e.py) are the same for every backend — a deferred
task frees its worker slot, a SIGKILLed triggerer leaves exactly one job, a task marked failed
cancels its job ... — only *how to start a job of a given length, read its remote state and count
its jobs* differs. Each :class:`Backend` subclass answers those questions for one service; a new
backend joins every scenario with one subclass here and one entry in :data:`BACKENDS`.

All waits are bounded by an event (a state read from the service or the task log) and a generous
deadline: CI is a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import time
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from airflow_spark_async.core.backend import find_key, key_family
from airflow_spark_async.emr.ids import StepsRef, parse_tag
from tests.e2e.airflow_stack import AirflowStack, AirflowStackError, as_utc
from tests.emr.moto_aws import MotoAws
from tests.servers.databricks_server import DatabricksServer
from tests.servers.livy_server import LivyServer, Step

__all__ = [
    "BACKENDS",
    "HEALTH_CHECK_THRESHOLD",
    "HELD",
    "HOLD_SECONDS",
    "SLOTS",
    "Backend",
    "GatedLivyServer",
    "Servers",
    "Ti",
    "db_rows",
    "live_triggerers",
    "set_parallelism",
]

#: LocalExecutor worker slots of the shared stack: one, so that two jobs running at once already
#: prove that a deferred task gave its slot back (a slot held per job would allow only one).
SLOTS = 1
#: ``[triggerer] triggerer_health_check_threshold``: a triggerer whose heartbeat is older than this
#: is dead to ``Trigger.assign_unassigned``, which hands its triggers to a live one. Well above the
#: 1 s heartbeat, so that a merely busy triggerer (a hundred triggers on a loaded machine) keeps them.
HEALTH_CHECK_THRESHOLD = 15
#: Seconds a real PySpark job spends before its ``hold_seconds`` begin (JVM, SparkSession, the
#: computation); subtracted so that a job of ``seconds`` runs about that long on every backend.
SPARK_START_SECONDS = 10
#: How long a fan-out job runs unless released: far beyond any wait, so that only the test's
#: :meth:`Backend.release_fan_out` ends it — once it has seen the jobs run side by side.
HOLD_SECONDS = 900
#: Generous bound of a wait for a remote state change (a loaded machine, a kill that the Spark
#: master acknowledges at once but reports seconds later).
STATE_TIMEOUT = 120.0

#: The step of a scripted batch that holds it ``running`` until :meth:`GatedLivyServer.release`.
HELD = Step("running", 0.0, ("held by the test until released",))


class GatedLivyServer(LivyServer):
    """The Livy test server (real PySpark for the example DAGs), plus what the failover and clear
    scenarios need of its scripted batches:

    * a gate: a batch whose script contains :data:`HELD` stays ``running`` at that step until the
      test calls :meth:`release`, then runs the rest — the failover must keep many batches running
      for as long as the failover takes, which depends on the machine's load;
    * :meth:`script_in_order`: scripts for the next batches of one file, consumed in submission
      order — the clear scenario scripts the first try's batch and the new try's differently, and
      a shared server must not hand those scripts to another DAG's batch.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gate = asyncio.Event()
        self._ordered: list[tuple[re.Pattern[str], tuple[Step, ...]]] = []

    def release(self) -> None:
        """Let every held batch (and every batch held later) go on with its script."""
        self._call(self._open_gate())

    async def _open_gate(self) -> None:
        self._gate.set()

    def script_in_order(self, file: str, *scripts: tuple[Step, ...]) -> None:
        """The next ``len(scripts)`` batches whose file matches the regex ``file`` run these, in order."""
        with self._lock:
            self._ordered.extend((re.compile(file), tuple(steps)) for steps in scripts)

    def _script_for(self, file: str) -> tuple[Step, ...] | None:
        with self._lock:
            for i, (pattern, steps) in enumerate(self._ordered):
                if pattern.search(file):
                    del self._ordered[i]
                    return steps
        return super()._script_for(file)  # outside the lock: it takes the (non-reentrant) lock itself

    async def _run_script(self, batch: Any, steps: Iterable[Step]) -> None:
        steps = tuple(steps)
        if HELD not in steps:
            await super()._run_script(batch, steps)
            return
        cut = steps.index(HELD) + 1
        # Up to HELD, then the base class holds the last step for ever; a DELETE cancels this task.
        holding = asyncio.ensure_future(super()._run_script(batch, steps[:cut]))
        try:
            await self._gate.wait()
        finally:
            holding.cancel()
        await super()._run_script(batch, steps[cut:])


@dataclass(frozen=True)
class Servers:
    """The services of the shared stack, started once per e2e session."""

    spark: Any  # tests.conftest's LocalSparkCluster
    livy: GatedLivyServer
    aws: MotoAws
    databricks: DatabricksServer


@dataclass(frozen=True)
class Ti:
    """One task instance a scenario acts on."""

    dag_id: str
    run_id: str
    task_id: str


def db_rows(stack: AirflowStack, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of a read-only query (``?`` parameters) on the stack's metadata DB, PostgreSQL or SQLite
    (:meth:`AirflowStack.query`); readers never block Airflow."""
    return stack.query(sql, *params)


def live_triggerers(stack: AirflowStack) -> list[int]:
    """Triggerer jobs that heartbeat (a SIGKILLed triggerer's job stays 'running' in the DB).

    The heartbeat's age is computed here, not in SQL: date arithmetic is spelled differently in
    every database, and the DB runs on this machine's clock.
    """
    rows = db_rows(stack, "SELECT id, latest_heartbeat FROM job WHERE job_type = 'TriggererJob' "
                          "AND state = 'running' AND end_date IS NULL ORDER BY id")
    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=HEALTH_CHECK_THRESHOLD)
    return [int(job_id) for job_id, beat in rows if beat is not None and as_utc(beat) > since]


def set_parallelism(stack: AirflowStack, slots: int) -> None:
    """Run the scheduler (its LocalExecutor) with ``slots`` worker slots, restarting it if needed.

    Why a restart and not a second stack: only the scheduler reads ``[core] parallelism``; a
    scheduler restart costs seconds, a stack start tens of seconds. The slot scenarios need
    :data:`SLOTS`; the failover needs room for a hundred task runs.
    """
    if stack.parallelism == slots:
        return
    stack.stop_component("scheduler")
    stack.start_component("scheduler", env={"AIRFLOW__CORE__PARALLELISM": str(slots)})
    stack.parallelism = slots
    stack.wait_healthy(("scheduler",))


def _run_id(tag: str) -> str:
    return f"{tag}_{uuid.uuid4().hex[:8]}"


class Backend:
    """How the scenarios drive one backend; subclasses fill in the service-specific parts.

    The *job DAG* (:attr:`dag_id`, :attr:`task_id`) submits one job whose length the run's conf
    chooses; the scenarios trigger it, act on its deferred task and check the service.
    """

    name: ClassVar[str]
    dag_id: ClassVar[str]
    task_id: ClassVar[str]
    #: the core's log line of a submission, counted in the task log
    submitted_line: ClassVar[str]
    #: the service's state of a job that ran to its end
    succeeded_state: ClassVar[str]
    #: the DAG (and its task) whose job outlives its ``job_timeout``; ``None``: no deadline scenario
    deadline: ClassVar[tuple[str, str] | None] = None

    def __init__(self, stack: AirflowStack, servers: Servers) -> None:
        self.stack = stack
        self.servers = servers

    def __repr__(self) -> str:
        return self.name

    # -- one job ---------------------------------------------------------------------------

    def job_conf(self, tag: str, seconds: float) -> dict[str, Any]:
        """The conf of a run of the job DAG whose job runs for ``seconds``."""
        raise NotImplementedError

    def start(self, tag: str, seconds: float) -> Ti:
        """Trigger one run of the job DAG; its job runs for ``seconds``."""
        ti = Ti(self.dag_id, _run_id(tag), self.task_id)
        self.stack.trigger_dag(ti.dag_id, run_id=ti.run_id, conf=self.job_conf(ti.run_id, seconds))
        return ti

    def job_id(self, ti: Ti) -> str:
        """The id of the task's job, as its trigger logs it (``Job <id> is ...``)."""
        return str(self.stack.xcom(ti.dag_id, ti.run_id, ti.task_id, "job_id")).strip('"')

    def wait_running(self, ti: Ti) -> str:
        """Wait until the deferred task's job runs on the service; return its id."""
        return self.job_id(ti)

    def job_state(self, ti: Ti, job: str) -> str:
        """The service's own state of the job."""
        raise NotImplementedError

    def wait_state(self, ti: Ti, job: str, state: str, timeout: float = STATE_TIMEOUT) -> None:
        """Wait until the service reports ``state`` for the job; fail with the task log if it does not."""
        deadline = time.monotonic() + timeout
        while (now := self.job_state(ti, job)) != state:
            if time.monotonic() > deadline:
                log = self.stack.task_log(ti.dag_id, ti.run_id, ti.task_id, try_number=1)
                raise self.stack.fail(f"job {job} still {now}, not {state}, {timeout:.0f} s on; task log:\n"
                                      f"{log[-3000:]}")
            time.sleep(1)

    def wait_cancelled(self, ti: Ti, job: str) -> None:
        """Wait until the service shows the job cancelled; then check how it was cancelled."""
        raise NotImplementedError

    def snapshot(self) -> object:
        """What :meth:`jobs_of` needs to tell this test's jobs from earlier ones."""
        return None

    def jobs_of(self, ti: Ti, before: object) -> list[str]:
        """Every job submitted for the task instance (any try) since ``before``."""
        raise NotImplementedError

    def check_the_one_job(self, ti: Ti, job: str) -> None:
        """After a run with exactly one job ``job`` (as :meth:`jobs_of` names it): what else the backend
        proves of it."""

    # -- many jobs at once ---------------------------------------------------------------------

    def start_fan_out(self, tag: str) -> list[Ti]:
        """Start :data:`SLOTS` + 1 jobs that run until :meth:`release_fan_out`; return their task instances.

        Held, not timed: with one slot shared by every backend's task runs, a job of fixed length
        could end before its sibling's task run got the slot on a loaded machine.
        """
        return [self.start(f"{tag}{i}", HOLD_SECONDS) for i in range(SLOTS + 1)]

    def release_fan_out(self, tis: list[Ti], before: object) -> None:
        """Let the fan-out's jobs end now, successfully."""
        for ti in tis:
            Path(self.release_file(ti.run_id)).touch()

    def release_file(self, run_id: str) -> str:
        """The file whose existence ends the run's held jobs (the apps in example_dags/spark_apps)."""
        return f"{self.stack.env['SPARK_ASYNC_OUTPUT_DIR']}/{run_id}.release"

    def running_jobs(self, tis: list[Ti], before: object) -> int:
        """How many of the fan-out's jobs run on the service now."""
        raise NotImplementedError

    def check_fan_out(self, tis: list[Ti], before: object) -> None:
        """After the fan-out's runs succeeded: one job per task, and the backend's own checks."""
        for ti in tis:
            assert len(self.jobs_of(ti, before)) == 1, f"one job per task: {ti}"


# -- Spark standalone ------------------------------------------------------------------------------


class Standalone(Backend):
    """A real local Spark cluster: the master's ``/json/`` lists drivers, its REST API their states."""

    name = "standalone"
    dag_id, task_id = "spark_standalone_sum_of_squares", "sum_of_squares"
    submitted_line = "Submitted standalone job"
    succeeded_state = "FINISHED"
    deadline = ("e2e_standalone_deadline", "too_slow")
    fan_out_dag, fan_out_task = "e2e_standalone_fan_out", "sleepy_job"

    def _master(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.servers.spark.ui_url}/json/", timeout=10) as resp:
            return dict(json.load(resp))

    def _drivers(self) -> set[str]:
        state = self._master()
        return {d["id"] for d in [*state["activedrivers"], *state["completeddrivers"]]}

    def job_conf(self, tag: str, seconds: float) -> dict[str, Any]:
        return {"n": 5000, "hold_seconds": max(5, seconds - SPARK_START_SECONDS)}

    def job_state(self, ti: Ti, job: str) -> str:
        url = f"{self.servers.spark.rest_url}/v1/submissions/status/{job}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(json.load(resp).get("driverState"))

    def wait_cancelled(self, ti: Ti, job: str) -> None:
        # The master answers a kill request at once but marks the driver KILLED only when its worker
        # reports the process gone, seconds later on a loaded machine: wait for that, not the answer.
        self.wait_state(ti, job, "KILLED")

    def snapshot(self) -> object:
        return self._drivers()

    def jobs_of(self, ti: Ti, before: object) -> list[str]:
        assert isinstance(before, set)
        return sorted(self._drivers() - before)  # nothing else submits while a scenario runs

    def start_fan_out(self, tag: str) -> list[Ti]:
        run_id = _run_id(tag)
        self.stack.trigger_dag(self.fan_out_dag, run_id=run_id,
                               conf={"sleep_seconds": HOLD_SECONDS, "release_file": self.release_file(run_id)})
        return [Ti(self.fan_out_dag, run_id, self.fan_out_task)]

    def running_jobs(self, tis: list[Ti], before: object) -> int:
        assert isinstance(before, set)
        running = {d["id"] for d in self._master()["activedrivers"] if d.get("state") == "RUNNING"}
        return len(running - before)

    def check_fan_out(self, tis: list[Ti], before: object) -> None:
        assert len(self.jobs_of(tis[0], before)) == SLOTS + 1, "one driver per mapped task"


# -- Apache Livy ------------------------------------------------------------------------------------


class Livy(Backend):
    """The Livy test server running every batch of the example DAG as a real PySpark application.

    A batch is told apart by the key family in its name: the family hashes the DAG run *instance*
    and the deployment salt, which a test cannot recompute from the run id, so it is read from the
    batch the task's ``job_id`` XCom names; every try and clear generation of the task shares it.
    """

    name = "livy"
    dag_id, task_id = "livy_sum_of_squares", "sum_of_squares"
    submitted_line = "Submitted livy job"
    succeeded_state = "success"
    N = 200_000

    def __init__(self, stack: AirflowStack, servers: Servers) -> None:
        super().__init__(stack, servers)
        self.livy = servers.livy
        self._families: dict[str, str] = {}

    def job_conf(self, tag: str, seconds: float) -> dict[str, Any]:
        return {"n": self.N, "hold_seconds": max(5, seconds - SPARK_START_SECONDS)}

    def release_file(self, run_id: str) -> str:
        return f"{self.stack.env['SPARK_ASYNC_OUTPUT_DIR']}/livy-{run_id}.json.release"  # see sum_of_squares.py

    def family_of(self, ti: Ti) -> str | None:
        """The key family of the task instance; ``None`` while it has not submitted yet."""
        if ti.run_id not in self._families:
            try:
                job_id = self.job_id(ti)
            except AirflowStackError:  # 404: no XCom yet
                return None
            key = find_key(next((b["name"] for b in self.livy.batches() if str(b["id"]) == job_id), None))
            if key is None:
                return None
            self._families[ti.run_id] = key_family(key)
        return self._families[ti.run_id]

    def batches_of(self, ti: Ti) -> list[dict[str, Any]]:
        """Every batch Livy holds for the task instance."""
        family = self.family_of(ti)
        return [b for b in self.livy.batches() if family and key_family(find_key(b["name"]) or "") == family]

    def posts_of(self, ti: Ti) -> int:
        family = self.family_of(ti)
        assert family is not None, f"no batch recorded for {ti.run_id}"
        return sum(1 for body in self.livy.posts if key_family(find_key(body.get("name")) or "") == family)

    def wait_running(self, ti: Ti) -> str:
        batch = self.stack.wait_until(
            lambda: next((b for b in self.batches_of(ti) if b["state"] == "running"), None),
            timeout=STATE_TIMEOUT, description=f"a running Livy batch of {ti.run_id}",
        )
        return str(batch["id"])

    def job_state(self, ti: Ti, job: str) -> str:
        return self.livy.batch_state(job)

    def wait_cancelled(self, ti: Ti, job: str) -> None:
        self.wait_state(ti, job, "deleted")
        assert self.livy.deleted[int(job)] == "killed", "the Spark application was killed, not left running"
        assert self.livy.count("DELETE", rf"^/batches/{job}$") == 1

    def jobs_of(self, ti: Ti, before: object) -> list[str]:
        assert self.posts_of(ti) == len(self.batches_of(ti)), "every batch POSTed for the task is listed"
        return [str(b["id"]) for b in self.batches_of(ti)]

    def running_jobs(self, tis: list[Ti], before: object) -> int:
        return sum(any(b["state"] == "running" for b in self.batches_of(ti)) for ti in tis)

    def check_fan_out(self, tis: list[Ti], before: object) -> None:
        output_dir = self.stack.env["SPARK_ASYNC_OUTPUT_DIR"]
        for ti in tis:
            assert self.posts_of(ti) == 1
            [batch] = self.batches_of(ti)
            assert batch["state"] == "success" and batch["appId"], batch
            with open(f"{output_dir}/livy-{ti.run_id}.json") as fh:
                output = json.load(fh)
            assert output["sum_of_squares"] == self.N * (self.N + 1) * (2 * self.N + 1) // 6
        log = self.stack.task_log(tis[0].dag_id, tis[0].run_id, tis[0].task_id, 1)
        assert self.submitted_line in log and "succeeded" in log
        assert "wrote " in log, "the end of the batch log (the application's own output) is in the task log"


# -- Amazon EMR steps ------------------------------------------------------------------------------


class Emr(Backend):
    """moto's server driven like EMR: a job is a step on a cluster made for the run; how long its
    steps take is the cluster's setting (``MotoAws.cluster_seconds``)."""

    name = "emr"
    dag_id, task_id = "emr_spark_step", "spark_pi"
    submitted_line = "Submitted emr job"
    succeeded_state = "COMPLETED"

    def __init__(self, stack: AirflowStack, servers: Servers) -> None:
        super().__init__(stack, servers)
        self.aws = servers.aws
        self._clusters: dict[str, str] = {}  # run id -> cluster id

    def job_conf(self, tag: str, seconds: float) -> dict[str, Any]:
        cluster_id = self.aws.create_cluster(f"e2e-{tag}")
        self.aws.cluster_seconds[cluster_id] = seconds
        self._clusters[tag] = cluster_id
        return {"cluster_id": cluster_id}

    def steps_of(self, ti: Ti) -> list[Any]:
        """Every step of the run's cluster that carries a key of this task instance (any generation),
        found by the key family of the step the task recorded in its ``job_id`` XCom."""
        cluster_id = self._clusters[ti.run_id]
        ref = StepsRef.parse(self.job_id(ti))
        steps = self.aws.steps(cluster_id)
        [recorded] = [s for s in steps if s.id == ref.step_ids[0]]
        tag = parse_tag(recorded.name)
        assert tag is not None, f"step {recorded.name!r} carries no key"
        family = key_family(tag.key)
        return [s for s in steps if (t := parse_tag(s.name)) and key_family(t.key) == family]

    def _step(self, ti: Ti, job: str) -> Any:
        return self.aws.step(self._clusters[ti.run_id], StepsRef.parse(job).step_ids[0])

    def wait_running(self, ti: Ti) -> str:
        assert len(self.steps_of(ti)) == 1, "one step for the task"
        job = self.job_id(ti)
        self.wait_state(ti, job, "RUNNING")
        return job

    def job_state(self, ti: Ti, job: str) -> str:
        return str(self._step(ti, job).state)

    def wait_cancelled(self, ti: Ti, job: str) -> None:
        self.wait_state(ti, job, "CANCELLED")
        cluster_id = self._clusters[ti.run_id]
        [request] = [r for r in self.aws.cancel_requests if r["ClusterId"] == cluster_id]
        assert request["StepIds"] == [self._step(ti, job).id]
        assert request["StepCancellationOption"] == "SEND_INTERRUPT"

    def jobs_of(self, ti: Ti, before: object) -> list[str]:
        return [s.id for s in self.steps_of(ti)]

    def check_the_one_job(self, ti: Ti, job: str) -> None:
        [step] = self.steps_of(ti)
        assert step.state == "COMPLETED", "exactly one step, and it is the one that ran"
        assert StepsRef.parse(self.job_id(ti)).step_ids == (step.id,)

    def start_fan_out(self, tag: str) -> list[Ti]:
        cluster_id = self.aws.create_cluster(f"e2e-{tag}")  # one cluster, its steps run side by side
        self.aws.cluster_seconds[cluster_id] = HOLD_SECONDS
        tis = [Ti(self.dag_id, _run_id(f"{tag}{i}"), self.task_id) for i in range(SLOTS + 1)]
        for ti in tis:
            self._clusters[ti.run_id] = cluster_id
            self.stack.trigger_dag(ti.dag_id, run_id=ti.run_id, conf={"cluster_id": cluster_id})
        return tis

    def running_jobs(self, tis: list[Ti], before: object) -> int:
        return sum(s.state == "RUNNING" for s in self.aws.steps(self._clusters[tis[0].run_id]))

    def release_fan_out(self, tis: list[Ti], before: object) -> None:
        self.aws.cluster_seconds[self._clusters[tis[0].run_id]] = 0  # its steps complete at the next tick


# -- Databricks ------------------------------------------------------------------------------------


class Databricks(Backend):
    """The Databricks Jobs API test server (OAuth M2M through databricks-sdk in every process); a
    run is told apart by its name (the task id) and its creation time."""

    name = "databricks"
    dag_id, task_id = "e2e_databricks_long", "long"
    submitted_line = "Submitted databricks job"
    succeeded_state = "SUCCESS"
    fan_out_dag = "e2e_databricks_fan_out"

    def __init__(self, stack: AirflowStack, servers: Servers) -> None:
        super().__init__(stack, servers)
        self.server = servers.databricks

    def job_conf(self, tag: str, seconds: float) -> dict[str, Any]:
        return {"seconds": seconds}

    def job_id(self, ti: Ti) -> str:
        return str(int(str(self.stack.xcom(ti.dag_id, ti.run_id, ti.task_id, "run_id"))))

    def job_state(self, ti: Ti, job: str) -> str:
        return self.server.life_cycle(job)

    def wait_cancelled(self, ti: Ti, job: str) -> None:
        self.wait_state(ti, job, "CANCELED")
        assert self.server.count("POST", "/runs/cancel$") >= 1

    def snapshot(self) -> object:
        return time.time()

    def jobs_of(self, ti: Ti, before: object) -> list[str]:
        assert isinstance(before, float)
        return [str(r.run_id) for r in list(self.server.runs.values())
                if r.run_name == ti.task_id and r.created >= before]

    def check_the_one_job(self, ti: Ti, job: str) -> None:
        assert self.job_id(ti) == job

    def start_fan_out(self, tag: str) -> list[Ti]:
        run_id = _run_id(tag)
        self.stack.trigger_dag(self.fan_out_dag, run_id=run_id, conf={"seconds": HOLD_SECONDS})
        return [Ti(self.fan_out_dag, run_id, f"run_{i}") for i in range(SLOTS + 1)]

    def release_fan_out(self, tis: list[Ti], before: object) -> None:
        for ti in tis:
            for job in self.jobs_of(ti, before):
                self.server.finish_now(job)

    def running_jobs(self, tis: list[Ti], before: object) -> int:
        return sum(self.server.life_cycle(job) == "RUNNING" for ti in tis for job in self.jobs_of(ti, before))


#: every backend, by the name the scenarios are parametrized with
BACKENDS: dict[str, type[Backend]] = {b.name: b for b in (Standalone, Livy, Emr, Databricks)}
