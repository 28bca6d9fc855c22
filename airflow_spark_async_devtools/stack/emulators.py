"""The stack's Livy, AWS and Databricks emulators: the test servers, set up to try DAGs by hand.

Why not the test servers as they are: a test scripts every job it submits and ends it when it has
seen what it waits for; nobody does that for a DAG tried by hand. So here

* **Livy** runs a batch for real on the local cluster when it can (see :mod:`.spark_submit`), and
  otherwise moves it ``starting → running → success`` on a clock (``job_seconds``);
* **AWS** is moto's server behind the tests' AWS proxy and clock (``tests/emr/moto_aws.py``):
  clusters start, steps go ``PENDING → RUNNING → COMPLETED``, job runs ``SUBMITTED → RUNNING →
  SUCCESS``. A step or job run whose application can run here runs for real with spark-submit on
  the local cluster, its state follows the process (``FAILED`` with its stderr for a non-zero exit;
  ``CancelSteps``/``CancelJobRun`` kill it) and its stdout/stderr go where EMR puts them on S3. The
  resources the example DAGs name in their default params exist from the start: cluster
  ``j-XXXXXXXXXXXXX``, EMR Serverless application ``00fabcdexample``, buckets ``my-emr-logs`` and
  ``asa-emr-logs``;
* **Databricks** is the Jobs API test server, whose runs follow its clock (``job_seconds``), with the
  saved job ``nightly-etl`` that ``databricks_python`` starts by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
import shlex
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from moto.core.utils import utcnow
from moto.server import ThreadedMotoServer

from airflow_spark_async_devtools.stack.spark_submit import local_livy_request, spark_env, spark_submit_argv
from tests.emr.moto_aws import AwsFaultProxy, MotoAws
from tests.servers.databricks_server import DatabricksServer
from tests.servers.livy_server import LivyServer, Step

__all__ = ["EXAMPLE_APPLICATION", "EXAMPLE_BUCKETS", "EXAMPLE_CLUSTER", "StackAws", "StackLivyServer",
           "databricks_server"]

#: what the example DAGs' default params name (emr_spark_step, emr_serverless_spark_pi, the log URIs)
EXAMPLE_CLUSTER = "j-XXXXXXXXXXXXX"
EXAMPLE_APPLICATION = "00fabcdexample"
EXAMPLE_BUCKETS = ("my-emr-logs",)
_ENDED_CLUSTER = ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the job's process group (spark-submit, its driver, the Python app), SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


class StackLivyServer(LivyServer):
    """The Livy test server that runs what it can on the local cluster and the rest on a clock."""

    def __init__(self, *, job_seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_seconds = job_seconds

    async def _run_spark(self, batch: Any) -> None:
        if local_livy_request(batch.request) is not None:
            await super()._run_spark(batch)
            return
        file = batch.request.get("file")
        note = f"emulated: {file} is not on this machine, so this batch runs for {self.job_seconds:g} s on a clock"
        await self._run_script(batch, (Step("starting", 1.0), Step("running", self.job_seconds, (note,)),
                                       Step("success", 0.0, ("emulated batch finished",))))

    def _spark_submit_argv(self, batch: Any) -> list[str]:
        request = local_livy_request(batch.request)
        assert request is not None
        return super()._spark_submit_argv(dataclasses.replace(batch, request=request))


def databricks_server(*, port: int, job_seconds: float) -> DatabricksServer:
    """The Jobs API test server on ``port``, its runs ``job_seconds`` long, with the examples' saved job."""
    server = DatabricksServer(port=port, default_seconds=job_seconds)
    server.add_job("nightly-etl", [{"task_key": "etl", "existing_cluster_id": "0101-etl",
                                    "spark_python_task": {"python_file": "dbfs:/jobs/etl.py"}}])
    return server


@dataclasses.dataclass
class _RealJob:
    """A step or job run that runs as a local spark-submit process."""

    proc: subprocess.Popen[bytes]
    folder: Path
    owner: str  # cluster id or application id


class StackAws(MotoAws):
    """moto + the tests' AWS proxy and clock on fixed ports, running what it can on the local cluster.

    :param port: where clients connect (the proxy); ``moto_port``: moto's own server behind it.
    :param spark_master: the local cluster that runs the jobs that can run here.
    :param jobs_dir: each real job's ``stdout``/``stderr`` under ``<jobs_dir>/<step or run id>/``.
    """

    def __init__(self, *, port: int, moto_port: int, job_seconds: float, spark_master: str, jobs_dir: Path) -> None:
        super().__init__(default_seconds=job_seconds)
        self.port = moto_port
        self.endpoint = f"http://127.0.0.1:{moto_port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
        self.proxy = AwsFaultProxy(self.endpoint, self)
        self.proxy.port = port
        self.proxy.origin = f"http://127.0.0.1:{port}"
        self.spark_master = spark_master
        self.jobs_dir = jobs_dir
        self._conf_dir = Path(tempfile.mkdtemp(prefix="stack-aws-spark-conf-"))
        self._real: dict[str, _RealJob] = {}
        self._considered: set[str] = set()

    def __enter__(self) -> StackAws:
        super().__enter__()
        for bucket in EXAMPLE_BUCKETS:
            self.client("s3").create_bucket(Bucket=bucket)
        self._rekey_cluster(self.create_cluster("airflow-spark-async-example"), EXAMPLE_CLUSTER)
        self._rekey_application(self.create_application("airflow-spark-async-example"), EXAMPLE_APPLICATION)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            jobs = list(self._real.values())
            self._real.clear()
        for job in jobs:
            _kill(job.proc)
        super().__exit__(*exc)

    # -- the example DAGs' resources -----------------------------------------------------------------

    def _rekey_cluster(self, cluster_id: str, wanted: str) -> None:
        """Give a cluster the id the example DAG's default param names (moto picks random ids)."""
        with self._lock:
            cluster = self.emr.clusters.pop(cluster_id)
            cluster.id = wanted
            self.emr.clusters[wanted] = cluster
            self.owned.discard(cluster_id)
            self.owned.add(wanted)

    def _rekey_application(self, application_id: str, wanted: str) -> None:
        with self._lock:
            app = self.serverless.applications.pop(application_id)
            app.id = wanted
            app.arn = app.arn.replace(application_id, wanted)
            self.serverless.applications[wanted] = app
            runs = self.serverless.job_runs.pop(application_id, None)
            if runs is not None:
                self.serverless.job_runs[wanted] = runs
            self.owned.discard(application_id)
            self.owned.add(wanted)

    # -- real jobs ---------------------------------------------------------------------------------

    def _start_real(self, job_id: str, owner: str, spark_args: list[str]) -> bool:
        """Start ``spark-submit`` for a job if it can run here; whether it did."""
        if job_id in self._considered:
            return job_id in self._real
        self._considered.add(job_id)
        argv = spark_submit_argv(spark_args, self.spark_master)
        if argv is None:
            return False
        folder = self.jobs_dir / job_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "command").write_text(shlex.join(argv) + "\n")
        with (folder / "stdout").open("wb") as out, (folder / "stderr").open("wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=folder,
                                    env=spark_env(self._conf_dir), start_new_session=True)
        self._real[job_id] = _RealJob(proc, folder, owner)
        return True

    def _logs(self, job: _RealJob) -> tuple[str, str]:
        read = [(job.folder / name).read_text(errors="replace") for name in ("stdout", "stderr")]
        return read[0], read[1]

    def _put_logs(self, folder_uri: str | None, job: _RealJob) -> None:
        if not folder_uri:
            return
        stdout, stderr = self._logs(job)
        for name, text in (("stdout.gz", stdout), ("stderr.gz", stderr)):
            bucket, _, key = f"{folder_uri.rstrip('/')}/{name}"[len("s3://"):].partition("/")
            with contextlib.suppress(Exception):  # EMR too skips the upload when the bucket is missing
                self.client("s3").put_object(Bucket=bucket, Key=key, Body=gzip.compress(text.encode()))

    def advance_clusters(self) -> None:
        self._finish_real_steps()
        super().advance_clusters()
        for cluster in list(self.emr.clusters.values()):
            if cluster.id not in self.owned:
                continue
            for step in cluster.steps:
                if step.state != "RUNNING" or step.id in self.held or step.id in self._considered:
                    continue
                args = [str(a) for a in step.args]
                if args[:1] == ["spark-submit"] and self._start_real(step.id, cluster.id, args[1:]):
                    self.held.add(step.id)  # the process decides, not the clock

    def _finish_real_steps(self) -> None:
        for step_id, job in list(self._real.items()):
            cluster = self.emr.clusters.get(job.owner)
            if cluster is None:
                continue  # a job run's, see advance_job_run
            step = self.step(cluster.id, step_id)
            folder = f"{cluster.log_uri.rstrip('/')}/{cluster.id}/steps/{step.id}" if cluster.log_uri else None
            if step.state == "CANCEL_PENDING" or cluster.state in _ENDED_CLUSTER:
                _kill(job.proc)
                reason = "Cancelled by request (SEND_INTERRUPT)" if step.state == "CANCEL_PENDING" else \
                    "Cluster terminated"
                self.set_step(step, "CANCELLED", reason=reason)
            elif job.proc.poll() is None:
                continue
            elif job.proc.returncode == 0:
                self._put_logs(folder, job)
                self.set_step(step, "COMPLETED")
            else:
                self._put_logs(folder, job)
                stderr = self._logs(job)[1].strip().splitlines()
                self.failure_details[step.id] = {
                    "Reason": f"Spark application exited with code {job.proc.returncode}",
                    "Message": stderr[-1][:500] if stderr else "",
                    **({"LogFile": f"{folder}/stderr.gz"} if folder else {}),
                }
                self.set_step(step, "FAILED")
            self.held.discard(step_id)
            del self._real[step_id]

    def advance_job_run(self, run: Any) -> None:
        """The tests' job-run clock, except for a run that runs for real: its process decides."""
        real = self._real.get(run.id)
        if real is not None:
            self._finish_real_run(run, real)
        else:
            super().advance_job_run(run)

    def job_run_started(self, run: Any) -> None:
        driver = (run.job_driver or {}).get("sparkSubmit") or {}
        args = [*shlex.split(driver.get("sparkSubmitParameters") or ""), driver.get("entryPoint", ""),
                *(driver.get("entryPointArguments") or [])]
        self._start_real(run.id, run.application_id, [str(a) for a in args])

    def _finish_real_run(self, run: Any, job: _RealJob) -> None:
        if run.state not in ("SUBMITTED", "PENDING", "SCHEDULED", "RUNNING"):  # cancelled meanwhile
            _kill(job.proc)
        elif job.proc.poll() is None:
            return
        else:
            monitoring = (run.configuration_overrides or {}).get("monitoringConfiguration") or {}
            log_uri = (monitoring.get("s3MonitoringConfiguration") or {}).get("logUri")
            folder = (f"{log_uri.rstrip('/')}/applications/{run.application_id}/jobs/{run.id}/SPARK_DRIVER"
                      if log_uri else None)
            self._put_logs(folder, job)
            if job.proc.returncode == 0:
                run.state = "SUCCESS"
            else:
                run.state = "FAILED"
                run.state_details = f"Job failed, please check complete logs in configured logging destination. " \
                                    f"ExitCode: {job.proc.returncode}."
            run.updated_at = utcnow()
        del self._real[run.id]

