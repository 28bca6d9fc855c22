"""moto's server, driven like the real AWS services, behind a fault proxy that speaks AWS.

Why this exists: the EMR backends talk to AWS through aiobotocore over HTTP, and ``mock_aws()``
patches botocore in-process, which aiobotocore's transport bypasses. So the tests start moto's
own HTTP server (:class:`moto.server.ThreadedMotoServer`) on 127.0.0.1 inside the test process
and point the Airflow ``aws`` connection at a fault proxy in front of it.

moto stores the resources but never advances them: its first step stays ``RUNNING``, later
ones ``PENDING``, and a job run is ``SUCCESS`` from the start. :class:`MotoAws` plays the
services' clock, changing moto's stored objects in-process the way EMR would:

* steps run up to the cluster's ``StepConcurrencyLevel`` at a time; a step running
  ``sleep_then_exit.py SECONDS CODE`` (the conformance app) completes after SECONDS, or fails
  with ``FailureDetails`` and its stdout/stderr uploaded to the cluster's S3 log URI;
* a cluster created through the proxy starts ``STARTING`` and is ``WAITING`` a moment later — or,
  when a bootstrap action runs the conformance app, after SECONDS, failing with
  ``BOOTSTRAP_FAILURE`` for a non-zero CODE;
  a terminated cluster cancels its unfinished steps (as EMR does — switchable, to test what
  happens when a step is left ``RUNNING``);
* a job run created through the proxy starts ``SUBMITTED``, runs, and ends like a step;

and the proxy fills in what moto does not model, saying so here rather than hiding it:

* ``CancelSteps`` — moto answers 500 "not implemented". With ``emulate_missing`` the proxy
  answers it as EMR documents (pending → ``CANCELLED``, running → ``CANCEL_PENDING`` →
  ``CANCELLED``); without, the request reaches moto and gets its 500.
* ``FailureDetails`` of a step, the ``Code`` of a cluster's state-change reason — added to moto's
  answers for the steps and clusters this class failed or terminated.
* a job run's ``createdAt`` — moto keeps the day only; runs started through the proxy get the
  instant, as AWS records it (lookups order runs by it, newest first).
* ``GetDashboardForJobRun`` — moto has no route (404); with ``emulate_missing`` the proxy answers
  with a fake one-time URL.
* ``ListSteps`` with a ``StepIds`` entry that is not a step of the cluster — moto silently leaves
  it out; EMR refuses the whole call with ``InvalidRequestException`` (what made one unknown id
  fail every step of its ten-id chunk). With ``emulate_missing`` the proxy refuses it as EMR does.

The proxy names each request by its AWS operation (``X-Amz-Target``, or the REST route), so
tests count ``AddJobFlowSteps`` or ``CancelJobRun`` calls and inject faults per operation, and
it records which access key signed each request.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
from aiohttp import web
from moto.backends import get_backend
from moto.core.utils import utcnow
from moto.server import ThreadedMotoServer

from airflow_spark_async.core.http import close_loop_sessions
from tests.servers.background import free_port
from tests.servers.fault_proxy import Fault, FaultProxy

__all__ = ["ACCOUNT", "APP", "AwsFaultProxy", "MotoAws", "aws_fault"]

ACCOUNT = "123456789012"
#: moto's EMR reads the region from the endpoint's host name only, so through 127.0.0.1 every
#: request lands in its default region; the tests use that region
REGION = "us-east-1"
LOG_BUCKET = "asa-emr-logs"
#: the conformance app, as a cluster or EMR Serverless would read it
APP = "s3://asa-emr-code/sleep_then_exit.py"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/asa-emr-job"

_REST_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/applications/[^/]+/jobruns$"), "StartJobRun"),
    ("GET", re.compile(r"^/applications/[^/]+/jobruns$"), "ListJobRuns"),
    ("GET", re.compile(r"^/applications/[^/]+/jobruns/[^/]+/dashboard$"), "GetDashboardForJobRun"),
    ("GET", re.compile(r"^/applications/[^/]+/jobruns/[^/]+$"), "GetJobRun"),
    ("DELETE", re.compile(r"^/applications/[^/]+/jobruns/[^/]+$"), "CancelJobRun"),
    ("POST", re.compile(r"^/applications/[^/]+/start$"), "StartApplication"),
    ("GET", re.compile(r"^/applications/[^/]+$"), "GetApplication"),
    ("POST", re.compile(r"^/applications$"), "CreateApplication"),
]
_CREDENTIAL = re.compile(r"Credential=([^/]+)/")

#: fault kinds this proxy adds to FaultProxy's: AWS error answers
AWS_FAULTS = {
    "throttle": (400, "ThrottlingException", "Rate exceeded"),
    "expired": (400, "ExpiredTokenException", "The security token included in the request is expired"),
    "denied": (400, "AccessDeniedException", "User is not authorized to perform this action"),
    "internal": (500, "InternalServerError", "An internal error occurred"),
}


def aws_fault(kind: str, count: int = 1, operation: str = ".*") -> Fault:
    """A fault for the next ``count`` requests of ``operation`` (a regex over operation names):
    one of ``AWS_FAULTS``, a :class:`Fault` kind, or ``lose`` (the request reaches moto and takes
    effect, then the connection is dropped before the answer — a lost response)."""
    return Fault(kind, count, path=rf" {operation}$", retry_after=None)


def operation_of(request: web.BaseRequest, body: bytes) -> str:
    target = request.headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    for method, pattern, name in _REST_ROUTES:
        if request.method == method and pattern.match(request.path):
            return name
    if request.method == "POST" and body.startswith(b"Action="):
        return body.split(b"&", 1)[0][len(b"Action="):].decode()
    return f"S3:{request.method}" if request.path.count("/") >= 2 else f"HTTP:{request.method}"


class AwsFaultProxy(FaultProxy):
    """A :class:`FaultProxy` that knows AWS: names requests by operation, answers AWS error codes,
    and lets :class:`MotoAws` emulate and amend moto's answers."""

    def __init__(self, upstream: str, service: MotoAws) -> None:
        super().__init__(upstream)
        self.service = service
        self.operations: list[str] = []
        self.signed_with: list[tuple[str, str]] = []  # (operation, access key id)
        self.bodies: list[tuple[str, dict[str, Any]]] = []  # (operation, JSON request body)
        self.timeline: list[tuple[str, float]] = []  # (operation, time.monotonic() it arrived)
        self._decided: tuple[Fault | None] | None = None
        self._operation = ""

    def clear(self) -> None:
        super().clear()
        with self._lock:
            self.operations.clear()
            self.signed_with.clear()
            self.bodies.clear()
            self.timeline.clear()

    def requests_of(self, operation: str) -> list[dict[str, Any]]:
        """The JSON bodies of the requests of ``operation``."""
        with self._lock:
            return [body for op, body in self.bodies if op == operation]

    def count(self, method: str, path_regex: str) -> int:
        """Requests whose *operation* matches ``path_regex`` (AWS names calls, not paths)."""
        with self._lock:
            return sum(1 for op in self.operations if re.fullmatch(path_regex, op))

    def ops(self, name: str) -> int:
        return self.count("", name)

    def _take_fault(self, path: str) -> Fault | None:
        if self._decided is not None:  # decided in _handle below, just before the parent asks
            (fault,), self._decided = self._decided, None
            return fault
        return super()._take_fault(f"{path} {self._operation}")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        operation = operation_of(request, body)
        key = _CREDENTIAL.search(request.headers.get("Authorization", ""))
        with self._lock:
            self.operations.append(operation)
            self.timeline.append((operation, time.monotonic()))
            self.signed_with.append((operation, key.group(1) if key else ""))
            if body.startswith(b"{"):
                self.bodies.append((operation, json.loads(body)))
        self._operation = operation
        fault = self._take_fault(request.path_qs)
        if fault is not None and fault.kind == "lose":
            # the request takes effect, then the connection drops: the client never hears the answer
            self._decided = (None,)
            response = await super()._handle(request)
            with self._lock:
                self.injected.append((fault.kind, operation))
            if isinstance(response, web.Response) and response.status == 200 and response.body:
                self.service.amend(operation, body, bytes(response.body))  # type: ignore[arg-type]
            assert request.transport is not None
            request.transport.abort()
            return response
        if fault is not None and fault.kind in AWS_FAULTS:
            status, code, message = AWS_FAULTS[fault.kind]
            with self._lock:
                self.requests.append((request.method, request.path_qs))
                self.injected.append((fault.kind, operation))
            return web.json_response({"__type": code, "message": message}, status=status,
                                     headers={"x-amzn-ErrorType": code})
        refused = None if fault is not None else self.service.refuse(operation, body)
        if refused is not None:
            with self._lock:
                self.requests.append((request.method, request.path_qs))
            code, message = refused
            return web.json_response({"__type": code, "message": message}, status=400,
                                     headers={"x-amzn-ErrorType": code})
        emulated = None if fault is not None else self.service.emulate(operation, request, body)
        if emulated is not None:
            with self._lock:
                self.requests.append((request.method, request.path_qs))
            return web.json_response(emulated)
        # no await between here and the parent's _take_fault: it receives this decision
        self._decided = (fault,)
        response = await super()._handle(request)
        if fault is None and isinstance(response, web.Response) and response.status == 200 and response.body:
            amended = self.service.amend(operation, body, bytes(response.body))  # type: ignore[arg-type]
            if amended is not None:
                headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
                return web.Response(status=200, body=amended, headers=headers)
        return response


class MotoAws:
    """moto's server + the services' clock + an :class:`AwsFaultProxy`; see the module docstring.

    :param emulate_missing: answer ``CancelSteps`` and ``GetDashboardForJobRun`` as AWS would
        (moto cannot).
    :param cancel_steps_on_termination: a terminated cluster cancels its unfinished steps.
    :param tick: seconds between two moves of the clock.
    :param default_seconds: how long any other step or run takes before it succeeds (``None``:
        it runs until a test ends it).
    """

    def __init__(self, *, emulate_missing: bool = True, cancel_steps_on_termination: bool = True,
                 region: str = REGION, tick: float = 0.05, default_seconds: float | None = None) -> None:
        self.default_seconds = default_seconds
        #: a step or run whose arguments include one of these fails (exit code 1)
        self.failing_args: set[str] = set()
        #: cluster id -> how long its steps take (instead of ``default_seconds``)
        self.cluster_seconds: dict[str, float] = {}
        self.region = region
        self.emulate_missing = emulate_missing
        self.cancel_steps_on_termination = cancel_steps_on_termination
        self.tick = tick
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.proxy = AwsFaultProxy(self.endpoint, self)
        self.failure_details: dict[str, dict[str, str]] = {}  # step id -> FailureDetails
        self.cluster_reasons: dict[str, str] = {}  # cluster id -> StateChangeReason.Code
        self.cancel_requests: list[dict[str, Any]] = []
        self.startup_seconds = 1.0
        #: cluster name -> bootstrap failure message: such a cluster ends TERMINATED_WITH_ERRORS
        self.startup_failures: dict[str, str] = {}
        #: clusters and applications this instance drives (moto's state is shared by every server
        #: in the process; each instance advances only what was created through it)
        self.owned: set[str] = set()
        #: steps and runs the clock leaves alone (a test holds them in a state)
        self.held: set[str] = set()
        self._started: dict[str, float] = {}  # object id -> when its current state began
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="moto-clock")

    # -- life cycle ----------------------------------------------------------------------

    def __enter__(self) -> MotoAws:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
        self.server.start()
        self.proxy.__enter__()
        self.client("s3").create_bucket(Bucket=LOG_BUCKET)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.proxy.__exit__(*exc)
        self.server.stop()

    @property
    def url(self) -> str:
        """Where the code under test connects: the proxy."""
        return self.proxy.url

    def conn_json(self, *, login: str = "AKIAASAEMRTEST000001", password: str = "secret", **extra: Any) -> str:
        """An ``AIRFLOW_CONN_*`` value for an ``aws`` connection to the proxy."""
        return json.dumps({"conn_type": "aws", "login": login, "password": password,
                           "extra": {"region_name": self.region, "endpoint_url": self.url, **extra}})

    @contextlib.contextmanager
    def connection(self, conn_id: str, **kwargs: Any) -> Iterator[str]:
        """Define ``conn_id`` as an environment connection for the duration of the block."""
        import os

        name = f"AIRFLOW_CONN_{conn_id.upper()}"
        old = os.environ.get(name)
        os.environ[name] = self.conn_json(**kwargs)
        try:
            yield conn_id
        finally:
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old

    def client(self, service: str) -> Any:
        """A plain boto3 client straight to moto (test set-up, not the code under test)."""
        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint,
                            aws_access_key_id="AKIAASAEMRSETUP00001", aws_secret_access_key="x")

    # -- moto's stored objects -------------------------------------------------------------

    @property
    def emr(self) -> Any:
        return get_backend("emr")[ACCOUNT][self.region]

    @property
    def serverless(self) -> Any:
        return get_backend("emr-serverless")[ACCOUNT][self.region]

    def create_cluster(self, name: str = "asa-test", *, concurrency: int = 256) -> str:
        answer = self.client("emr").run_job_flow(
            Name=name, ReleaseLabel="emr-7.5.0", LogUri=f"s3://{LOG_BUCKET}/logs/", StepConcurrencyLevel=concurrency,
            Instances={"KeepJobFlowAliveWhenNoSteps": True, "InstanceCount": 1, "MasterInstanceType": "m5.xlarge"},
            Applications=[{"Name": "Spark"}], JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole",
        )
        self.owned.add(answer["JobFlowId"])
        return str(answer["JobFlowId"])

    def create_application(self, name: str = "asa-test") -> str:
        answer = self.client("emr-serverless").create_application(name=name, releaseLabel="emr-7.5.0", type="SPARK")
        self.owned.add(answer["applicationId"])
        return str(answer["applicationId"])

    def step(self, cluster_id: str, step_id: str) -> Any:
        for step in self.emr.clusters[cluster_id].steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def steps(self, cluster_id: str) -> list[Any]:
        return list(self.emr.clusters[cluster_id].steps)

    def job_run(self, application_id: str, job_run_id: str) -> Any:
        return self.serverless.get_job_run(application_id, job_run_id)

    def set_step(self, step: Any, state: str, *, reason: str | None = None) -> None:
        with self._lock:
            step.state = state
            if reason is not None:
                step.last_state_change_reason = reason
            if state in ("COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED"):
                step.end_date_time = utcnow()
            self._started[step.id] = time.monotonic()

    def fail_step(self, cluster: Any, step: Any, code: int, reason: str | None = None) -> None:
        """End ``step`` FAILED with FailureDetails and its logs on S3, as EMR reports it."""
        folder = f"{cluster.log_uri.rstrip('/')}/{cluster.id}/steps/{step.id}"
        self._upload(f"{folder}/stdout.gz", f"sleeping then exiting {code}\n")
        self._upload(f"{folder}/stderr.gz", f"conformance-app failing on purpose with exit code {code}\n")
        self.failure_details[step.id] = {
            "Reason": reason or f"Spark application exited with code {code}",
            "Message": f"conformance-app failing on purpose with exit code {code}",
            "LogFile": f"{folder}/stderr.gz",
        }
        self.set_step(step, "FAILED")

    def terminate_cluster(self, cluster_id: str, *, code: str = "USER_REQUEST",
                          message: str = "Terminated by user request") -> None:
        with self._lock:
            cluster = self.emr.clusters[cluster_id]
            cluster.terminate()
            cluster.last_state_change_reason = message
            self.cluster_reasons[cluster_id] = code

    def _upload(self, uri: str, text: str) -> None:
        """Upload a log file as EMR does — or, like EMR, skip it when the bucket does not exist."""
        bucket, _, key = uri[len("s3://"):].partition("/")
        with contextlib.suppress(self.client("s3").exceptions.NoSuchBucket):
            self.client("s3").put_object(Bucket=bucket, Key=key, Body=gzip.compress(text.encode()))

    # -- the services' clock ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            with contextlib.suppress(Exception), self._lock:  # a half-created object: next tick
                self.advance_clusters()
                self.advance_job_runs()

    def _age(self, key: str) -> float:
        return time.monotonic() - self._started.setdefault(key, time.monotonic())

    def advance_clusters(self) -> None:
        """One tick of the clusters' clock: start-up, then each step's planned end (``_plan``)."""
        for cluster in list(self.emr.clusters.values()):
            if cluster.id not in self.owned:
                continue
            bootstrap = [arg for action in cluster.bootstrap_actions for arg in (action.script_path, *action.args)]
            seconds, code = self._plan(bootstrap, self.startup_seconds) or (self.startup_seconds, 0)
            if cluster.state == "STARTING" and self._age(cluster.id) >= seconds:
                failure = self.startup_failures.get(cluster.name) or (
                    code and f"On the master instance, bootstrap action 1 returned a non-zero return code {code}")
                if failure:
                    cluster.state = "TERMINATED_WITH_ERRORS"
                    cluster.last_state_change_reason = failure
                    self.cluster_reasons[cluster.id] = "BOOTSTRAP_FAILURE"
                else:
                    cluster.state = "WAITING"
                self._started[cluster.id] = time.monotonic()
            ended = cluster.state in ("TERMINATED", "TERMINATED_WITH_ERRORS")
            running = 0
            for step in cluster.steps:
                if step.id in self.held:
                    running += step.state == "RUNNING"
                    continue
                if ended and step.state in ("PENDING", "RUNNING", "CANCEL_PENDING"):
                    if self.cancel_steps_on_termination:
                        self.set_step(step, "CANCELLED", reason="Cluster terminated")
                    continue
                if step.state == "CANCEL_PENDING" and self._age(step.id) >= 0.2:
                    self.set_step(step, "CANCELLED", reason="Cancelled by request (SEND_INTERRUPT)")
                elif step.state == "RUNNING":
                    running += 1
                    plan = self._plan(step.args, self.cluster_seconds.get(cluster.id))
                    if plan and self._age(step.id) >= plan[0]:
                        if plan[1]:
                            self.fail_step(cluster, step, plan[1])
                        else:
                            self.set_step(step, "COMPLETED")
                        running -= 1
            if ended:
                continue
            for step in cluster.steps:
                if step.state == "PENDING" and running < max(1, cluster.step_concurrency_level):
                    step.start()
                    self.set_step(step, "RUNNING")
                    running += 1

    def advance_job_runs(self) -> None:
        """One tick of the EMR Serverless clock, for every job run of an application made here."""
        for application_id, runs in list(self.serverless.job_runs.items()):
            if application_id in self.owned:
                for run in runs:
                    self.advance_job_run(run)

    def advance_job_run(self, run: Any) -> None:
        """SUBMITTED turns RUNNING after 0.2 s (then :meth:`job_run_started`); RUNNING ends as planned."""
        key = f"run:{run.id}"
        if run.state == "SUBMITTED" and self._age(key) >= 0.2:
            run.state = "RUNNING"
            self._started[key] = time.monotonic()
            self.job_run_started(run)
        elif run.state == "RUNNING":
            driver = (run.job_driver or {}).get("sparkSubmit") or {}
            plan = self._plan([driver.get("entryPoint", ""), *(driver.get("entryPointArguments") or [])])
            if plan and self._age(key) >= plan[0]:
                if plan[1]:
                    self._fail_run(run, plan[1])
                else:
                    run.state = "SUCCESS"
                self._started[key] = time.monotonic()

    def job_run_started(self, run: Any) -> None:
        """A job run has just turned RUNNING: a subclass may start it for real (``./dev stack``)."""

    def _plan(self, args: list[str], seconds: float | None = None) -> tuple[float, int] | None:
        """(seconds, exit code) of a step or run: the conformance app says; others take ``seconds``
        (default ``default_seconds``) and fail when they carry one of ``failing_args``."""
        for index, arg in enumerate(args):
            if str(arg).endswith("sleep_then_exit.py"):
                rest = [*args[index + 1:], "1", "0"]
                return float(rest[0]), int(rest[1])
        seconds = self.default_seconds if seconds is None else seconds
        if seconds is None:
            return None
        return seconds, 1 if self.failing_args & {str(a) for a in args} else 0

    def _fail_run(self, run: Any, code: int) -> None:
        monitoring = ((run.configuration_overrides or {}).get("monitoringConfiguration") or {})
        log_uri = (monitoring.get("s3MonitoringConfiguration") or {}).get("logUri")
        if log_uri:
            folder = f"{log_uri.rstrip('/')}/applications/{run.application_id}/jobs/{run.id}/SPARK_DRIVER"
            self._upload(f"{folder}/stdout.gz", f"sleeping then exiting {code}\n")
            self._upload(f"{folder}/stderr.gz", f"conformance-app failing on purpose with exit code {code}\n")
        run.state = "FAILED"
        run.state_details = (f"Job failed, please check complete logs in configured logging destination. "
                             f"ExitCode: {code}. Last few exceptions: conformance-app failing on purpose")

    # -- the proxy's hooks -------------------------------------------------------------------------

    def emulate(self, operation: str, request: web.BaseRequest, body: bytes) -> dict[str, Any] | None:
        """Answer operations moto does not implement; ``None`` lets the request through."""
        if not self.emulate_missing:
            return None
        if operation == "CancelSteps":
            return self._cancel_steps(json.loads(body or b"{}"))
        if operation == "GetDashboardForJobRun":
            parts = request.path.split("/")
            return {"url": f"https://p-{parts[4]}.emrappui-prod.{self.region}.amazonaws.com/shs/?once={parts[2]}"}
        return None

    def refuse(self, operation: str, body: bytes) -> tuple[str, str] | None:
        """An AWS error (code, message) for a request EMR refuses but moto accepts; ``None``: none."""
        if not self.emulate_missing or operation != "ListSteps":
            return None
        params = json.loads(body or b"{}")
        cluster = self.emr.clusters.get(params.get("ClusterId"))
        if cluster is None or not params.get("StepIds"):
            return None
        known = {step.id for step in cluster.steps}
        unknown = [s for s in params["StepIds"] if s not in known]
        if unknown:
            return "InvalidRequestException", f"Step id '{unknown[0]}' is not valid."
        return None

    def _cancel_steps(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.cancel_requests.append(params)
            out = []
            for step_id in params.get("StepIds", []):
                try:
                    step = self.step(params["ClusterId"], step_id)
                except KeyError:
                    out.append({"StepId": step_id, "Status": "FAILED", "Reason": "Step not found"})
                    continue
                if step.state == "PENDING":
                    self.set_step(step, "CANCELLED", reason="Cancelled by request")
                elif step.state == "RUNNING":
                    self.set_step(step, "CANCEL_PENDING")
                else:
                    out.append({"StepId": step_id, "Status": "FAILED", "Reason": f"Step is {step.state}"})
                    continue
                out.append({"StepId": step_id, "Status": "SUBMITTED", "Reason": ""})
            return {"CancelStepsInfoList": out}

    def amend(self, operation: str, request: bytes, answer: bytes) -> bytes | None:
        """Bring moto's answer closer to AWS's (see the module docstring); ``None`` keeps it."""
        if operation == "RunJobFlow":
            cluster_id = json.loads(answer).get("JobFlowId")
            with self._lock:
                self.owned.add(cluster_id)
                if cluster_id in self.emr.clusters:
                    self.emr.clusters[cluster_id].state = "STARTING"
                    self._started[cluster_id] = time.monotonic()
            return None
        if operation == "CreateApplication":
            self.owned.add(json.loads(answer).get("applicationId"))
            return None
        if operation == "StartJobRun":
            data = json.loads(answer)
            with self._lock:
                run = self.job_run(data["applicationId"], data["jobRunId"])
                run.state = "SUBMITTED"
                run.created_at = run.updated_at = utcnow()  # moto keeps the day only; AWS the instant
                self._started[f"run:{data['jobRunId']}"] = time.monotonic()
            return None
        if operation in ("ListSteps", "DescribeStep", "DescribeCluster", "ListClusters"):
            data = json.loads(answer)
            for step in [*data.get("Steps", []), *([data["Step"]] if data.get("Step") else [])]:
                if step.get("Id") in self.failure_details:
                    step.setdefault("Status", {})["FailureDetails"] = self.failure_details[step["Id"]]
            for cluster in [*data.get("Clusters", []), *([data["Cluster"]] if data.get("Cluster") else [])]:
                if cluster.get("Id") in self.cluster_reasons:
                    cluster["Status"].setdefault("StateChangeReason", {})["Code"] = self.cluster_reasons[cluster["Id"]]
            return json.dumps(data).encode()
        return None




def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_then_kill(trigger: Any, after: float = 0.5, task_state: str | None = "failed") -> None:
    """Run ``trigger`` for ``after`` seconds, then do what the triggerer does when a user kills its
    task: cancel the run and call ``on_kill``. ``on_kill`` cancels only when it reads that the task
    left the deferred state; ``task_state`` is what it reads (a user marked the task failed)."""

    async def state() -> str | None:
        return task_state

    trigger.read_task_state = state  # the one read of Airflow's state a test cannot make for real

    async def run() -> None:
        task = asyncio.create_task(anext(trigger.run()))
        await asyncio.sleep(after)
        task.cancel()
        await trigger.on_kill()
        await close_loop_sessions()

    asyncio.run(run())
