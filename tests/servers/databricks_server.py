"""A Databricks Jobs API 2.1/2.2 server for tests, written from the public API documentation.

It serves ``runs/submit``, ``run-now``, ``runs/get`` (paging tasks like 2.2), ``runs/get-output``,
``runs/cancel``, ``runs/cancel-all``, ``runs/list`` (paging, ``active_only`` …) and ``jobs/list``
(by exact name), plus the auth endpoints databricks-sdk talks to: host metadata, OIDC discovery
and token endpoint (OAuth M2M), and an Entra ID token endpoint (Azure service principals).

Why so strict: every request body is checked against databricks-sdk's typed models — the
signature of ``JobsAPI.submit`` / ``JobsAPI.run_now`` and the dataclasses below it
(``SubmitTask``, ``compute.ClusterSpec`` …) — so an unknown field, a wrong type or a bad enum
value fails the test with a 400 ``INVALID_PARAMETER_VALUE``, as it would fail in production.

Runs are simulated from the clock, never from a background task: each task is ``PENDING`` for
``pending`` seconds, ``RUNNING`` for the seconds its parameters ask for (the convention of
``tests/apps/sleep_then_exit.py`` — ``[seconds, exit_code]`` — for tasks that run that app;
``{"seconds", "exit_code", "result"}`` base parameters for notebooks; ``default_seconds`` for
anything else, such as the example DAGs' realistic tasks), then ``TERMINATED``;
tasks wait for their ``depends_on``; a cancel passes through ``TERMINATING``. Tests can script a
run's life cycle phase by phase (:meth:`DatabricksServer.script`), choose whether runs carry the
classic ``state``, the newer ``status`` or both, and inject Databricks-shaped faults
(``TEMPORARILY_UNAVAILABLE``, 401 after revoking tokens, slow token endpoints).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import enum
import inspect
import itertools
import json
import re
import time
import typing
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from tests.servers.background import BackgroundServer

__all__ = ["DatabricksServer", "Phase", "ServerFault", "validate_body"]

TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}
#: tasks whose file, main class or parameters name this follow the [seconds, exit_code] convention
TEST_APP = "sleep_then_exit"
WORKSPACE_ID = "1234567890123456"
BODY = web.RequestKey("body", object)
CANCEL_SECONDS = 0.5
TERMINATING_SECONDS = 0.2


# -- request validation against databricks-sdk's models ---------------------------------------


def _check(value: Any, tp: Any, path: str) -> list[str]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return []
    if origin is typing.Union:
        if value is None:
            return [] if type(None) in args else [f"{path}: null is not allowed"]
        options = [a for a in args if a is not type(None)]
        results = [_check(value, a, path) for a in options]
        return [] if any(not r for r in results) else results[0]
    if value is None:
        return [f"{path}: null is not allowed"]
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [e for i, v in enumerate(value) for e in _check(v, args[0], f"{path}[{i}]")]
    if origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        return [e for k, v in value.items() for e in _check(v, args[1], f"{path}.{k}")]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = [m.value for m in tp]
        return [] if value in allowed else [f"{path}: {value!r} is not one of {allowed}"]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        errors = [f"{path}: unknown field {k!r}" for k in value if k not in fields]
        for name, field in fields.items():
            required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            if required and name not in value:
                errors.append(f"{path}: missing required field {name!r}")
            elif name in value:
                errors += _check(value[name], hints[name], f"{path}.{name}")
        return errors
    if tp is bool:
        return [] if isinstance(value, bool) else [f"{path}: expected a boolean, got {value!r}"]
    if tp is int:
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{path}: expected an integer, "
                                                                                  f"got {value!r}"]
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected a number, got {value!r}"]
    if tp is str:
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {value!r}"]
    return []


def validate_body(api_method: Callable[..., Any], body: Any) -> list[str]:
    """Errors of ``body`` against the keyword arguments of a databricks-sdk API method."""
    if not isinstance(body, dict):
        return ["the request body must be a JSON object"]
    signature = inspect.signature(api_method)
    hints = typing.get_type_hints(api_method)
    params = {n: p for n, p in signature.parameters.items() if n != "self"}
    errors = [f"unknown field {k!r}" for k in body if k not in params]
    for name, param in params.items():
        if param.default is inspect.Parameter.empty and name not in body:
            errors.append(f"missing required field {name!r}")
        elif name in body:
            errors += _check(body[name], hints[name], name)
    return errors


def _sdk_methods() -> tuple[Callable[..., Any], Callable[..., Any]]:
    from databricks.sdk.service.jobs import JobsAPI

    return JobsAPI.submit, JobsAPI.run_now


# -- simulated runs ----------------------------------------------------------------------------


@dataclasses.dataclass
class Phase:
    """One step of a scripted life cycle: ``life_cycle`` for ``seconds`` (``None``: for ever)."""

    life_cycle: str
    seconds: float | None = None
    result: str | None = None
    message: str = ""
    code: str | None = None
    queue_reason: str = ""


@dataclasses.dataclass
class Behaviour:
    """What one task does: wait, run, end with ``exit_code``; what get-output then says."""

    seconds: float = 1.0
    exit_code: int = 0
    result: str | None = None
    pending: float = 0.2

    @classmethod
    def of(cls, task: Mapping[str, Any], default_seconds: float) -> Behaviour:
        """The test app's convention where the task runs it, else ``default_seconds`` and success;
        a notebook without a ``result`` parameter exits with its parameters as JSON (an echo)."""

        def num(v: Any, default: float) -> float:
            try:
                return float(v)
            except (TypeError, ValueError):
                return default

        for kind in ("spark_python_task", "spark_jar_task", "spark_submit_task", "python_wheel_task"):
            block = task.get(kind)
            if isinstance(block, Mapping):
                params = [str(p) for p in block.get("parameters") or []]
                if not any(TEST_APP in str(v) for v in (block.get("python_file"), block.get("main_class_name"),
                                                        *params)):
                    return cls(seconds=default_seconds)
                params = params[-2:] if kind == "spark_submit_task" else params
                return cls(seconds=num(params[0] if params else None, default_seconds),
                           exit_code=int(num(params[1] if len(params) > 1 else None, 0)))
        notebook = task.get("notebook_task")
        if isinstance(notebook, Mapping):
            base = dict(notebook.get("base_parameters") or {})
            return cls(seconds=num(base.get("seconds"), default_seconds), exit_code=int(num(base.get("exit_code"), 0)),
                       result=base["result"] if "result" in base else json.dumps(base, sort_keys=True))
        return cls(seconds=default_seconds)


@dataclasses.dataclass
class SimTask:
    task_key: str
    run_id: int
    spec: dict[str, Any]
    behaviour: Behaviour
    depends_on: list[str]
    run_if: str = "ALL_SUCCESS"

    @property
    def kind(self) -> str | None:
        return next((k for k, v in self.spec.items() if k.endswith("_task") and isinstance(v, dict)), None)


@dataclasses.dataclass
class SimRun:
    run_id: int
    run_name: str
    run_type: str
    tasks: list[SimTask]
    created: float  # time.time()
    token: str | None = None
    job_id: int | None = None
    timeout_seconds: float = 0
    cancelled_at: float | None = None
    script: list[Phase] | None = None
    number_in_job: int | None = None


@dataclasses.dataclass
class TaskState:
    life_cycle: str
    result: str | None = None
    message: str = ""
    started: float | None = None
    ended: float | None = None
    #: ``user_cancelled_or_timedout``: a cancel (or the run's timeout) ends it — set from the moment
    #: the cancel is under way (TERMINATING), not only once the result says CANCELED
    cancelled: bool = False


@dataclasses.dataclass
class ServerFault:
    """Answer the next ``count`` requests matching ``path`` with a Databricks error — or, with
    ``lose_answer``, handle them and then drop the connection: the request took effect but the
    client never hears so, which is exactly what an idempotency token makes safe to resend."""

    status: int = 503
    error_code: str = "TEMPORARILY_UNAVAILABLE"
    message: str = "The service is temporarily unavailable. Please try again later."
    path: str = ".*"
    count: int = 1
    retry_after: float | None = None
    lose_answer: bool = False


class DatabricksServer(BackgroundServer):
    """``with DatabricksServer() as server:``; point a ``databricks`` connection at ``server.url``.

    :param pat: the personal access token it accepts.
    :param client_id, client_secret: the OAuth M2M service principal it accepts.
    :param azure_client_id, azure_client_secret: the Entra ID service principal it accepts.
    :param username, password: basic auth it accepts.
    :param token_ttl: lifetime of issued OAuth tokens (seconds).
    :param tasks_page_size: tasks per runs/get page (2.2 pages at 100).
    :param default_seconds: how long a task that does not follow the test app's convention runs.
    :param port: where it listens (default: a free port).
    """

    def __init__(
        self,
        *,
        pat: str = "dapi-test-token",
        client_id: str = "sp-client",
        client_secret: str = "sp-secret",
        azure_client_id: str = "azure-client",
        azure_client_secret: str = "azure-secret",
        username: str = "user@example.com",
        password: str = "user-password",
        token_ttl: int = 3600,
        tasks_page_size: int = 100,
        default_seconds: float = 1.0,
        port: int | None = None,
    ) -> None:
        super().__init__(port=port)
        self.pat, self.client_id, self.client_secret = pat, client_id, client_secret
        self.azure_client_id, self.azure_client_secret = azure_client_id, azure_client_secret
        self.username, self.password = username, password
        self.token_ttl = token_ttl
        self.tasks_page_size = tasks_page_size
        self.default_seconds = default_seconds
        #: which run state objects responses carry: the classic "state", the newer "status", or both
        self.state_fields: tuple[str, ...] = ("state", "status")
        self.token_delay = 0.0
        self.runs: dict[int, SimRun] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        #: (path, the Authorization header) of every API request, to prove who polled what
        self.credentials: list[tuple[str, str]] = []
        #: further personal access tokens accepted besides ``pat`` (another principal's)
        self.other_pats: set[str] = set()
        self.token_requests: list[str] = []
        self.rejected: list[tuple[str, list[str]]] = []
        self._tokens: dict[str, float] = {}  # issued OAuth/AAD token -> expiry
        self._by_token: dict[str, int] = {}
        self._scripts: dict[str, list[Phase]] = {}
        self._faults: list[ServerFault] = []
        self._ids = itertools.count(1001)
        self._submit, self._run_now = _sdk_methods()

    # -- control from tests -----------------------------------------------------------------

    def add_job(self, name: str, tasks: list[dict[str, Any]]) -> int:
        with self._lock:
            job_id = next(self._ids)
            self.jobs[job_id] = {"job_id": job_id, "settings": {"name": name, "tasks": tasks},
                                 "creator_user_name": self.username, "runs": 0}
            return job_id

    def script(self, run_name: str, phases: list[Phase]) -> None:
        """Runs named ``run_name`` (or of the job named so) follow ``phases`` instead of the simulation."""
        with self._lock:
            self._scripts[run_name] = phases

    def fail(self, *faults: ServerFault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def rotate_pat(self, new: str) -> str:
        """Replace the accepted PAT (the old one is refused from now on); returns the old one."""
        with self._lock:
            old, self.pat = self.pat, new
            self.other_pats.discard(new)
        return old

    def bearers(self, path_regex: str) -> list[str]:
        """The bearer tokens the API requests matching ``path_regex`` carried, in order."""
        with self._lock:
            return [h.partition(" ")[2] for p, h in self.credentials if re.search(path_regex, p)
                    and h.startswith("Bearer ")]

    def revoke_tokens(self) -> None:
        """Every issued OAuth token stops working now: the next call with one gets a 401."""
        with self._lock:
            self._tokens.clear()

    def clear(self) -> None:
        """Forget recorded requests, pending faults and scripts (runs and jobs stay)."""
        with self._lock:
            self.requests.clear()
            self.credentials.clear()
            self.token_requests.clear()
            self.rejected.clear()
            self._faults.clear()
            self._scripts.clear()

    def bodies(self, path_regex: str) -> list[Any]:
        with self._lock:
            return [b for _, p, b in self.requests if re.search(path_regex, p)]

    def life_cycle(self, run_id: int | str) -> str:
        """The run's state as the API would show it: its result once ended, else its life cycle."""
        with self._lock:
            state = self._run_state(self.runs[int(run_id)], time.time())
            return state.result or state.life_cycle

    def finish_now(self, run_id: int | str) -> None:
        """End the run's running tasks now, as their parameters say they end (a test's gate: a run
        held "for ever" ends once the test has seen what it waits for)."""
        with self._lock:
            run = self.runs[int(run_id)]
            now = time.time()
            states = self._task_states(run, now)
            for task in run.tasks:
                started = states[task.task_key].started
                if states[task.task_key].life_cycle == "RUNNING" and started is not None:
                    task.behaviour = dataclasses.replace(task.behaviour, seconds=now - started)

    # -- serving ------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/.well-known/databricks-config", self._host_metadata)
        app.router.add_get("/oidc/.well-known/oauth-authorization-server", self._oidc_discovery)
        app.router.add_post("/oidc/v1/token", self._oidc_token)
        app.router.add_post("/aad/{tenant}/oauth2/token", self._aad_token)
        for version in ("2.1", "2.2"):
            base = f"/api/{version}/jobs"
            app.router.add_post(f"{base}/runs/submit", self._runs_submit)
            app.router.add_post(f"{base}/run-now", self._run_now_handler)
            app.router.add_get(f"{base}/runs/get", self._runs_get)
            app.router.add_get(f"{base}/runs/get-output", self._runs_get_output)
            app.router.add_post(f"{base}/runs/cancel", self._runs_cancel)
            app.router.add_post(f"{base}/runs/cancel-all", self._runs_cancel_all)
            app.router.add_get(f"{base}/runs/list", self._runs_list)
            app.router.add_get(f"{base}/list", self._jobs_list)
        return app

    # -- middleware: recording, faults, auth --------------------------------------------------

    @staticmethod
    def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.json_response({"error_code": code, "message": message}, status=status, headers=headers)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body and request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                return self._error(400, "MALFORMED_REQUEST", "the body is not JSON")
        with self._lock:
            self.requests.append((request.method, request.path_qs, body))
            if request.path.startswith("/api/"):
                self.credentials.append((request.path_qs, request.headers.get("Authorization", "")))
            fault = next((f for f in self._faults if f.count > 0 and re.search(f.path, request.path_qs)), None)
            if fault:
                fault.count -= 1
        if fault and not fault.lose_answer:
            headers = {"Retry-After": str(int(fault.retry_after))} if fault.retry_after is not None else None
            return self._error(fault.status, fault.error_code, fault.message, headers)
        if request.path.startswith("/api/"):
            refused = self._authenticate(request.headers.get("Authorization", ""))
            if refused:
                return self._error(401, "UNAUTHENTICATED", refused)
        request[BODY] = body
        response = await handler(request)
        if fault and fault.lose_answer and request.transport is not None:
            request.transport.abort()
        return response

    def _authenticate(self, header: str) -> str | None:
        scheme, _, credential = header.partition(" ")
        if scheme == "Bearer":
            with self._lock:
                expiry = self._tokens.get(credential)
            if credential == self.pat or credential in self.other_pats or (expiry is not None and
                                                                            expiry > time.time()):
                return None
            return "Invalid access token."
        if scheme == "Basic":
            user, _, password = base64.b64decode(credential).decode().partition(":")
            return None if (user, password) == (self.username, self.password) else "Invalid username or password."
        return "Credential was not sent or was of an unsupported type for this API."

    def _issue(self, prefix: str) -> dict[str, Any]:
        with self._lock:
            token = f"{prefix}-{next(self._ids)}"
            self._tokens[token] = time.time() + self.token_ttl
            self.token_requests.append(token)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl}

    async def _host_metadata(self, request: web.Request) -> web.Response:
        return web.json_response({"oidc_endpoint": f"{self.url}/oidc", "workspace_id": WORKSPACE_ID})

    async def _oidc_discovery(self, request: web.Request) -> web.Response:
        return web.json_response({"authorization_endpoint": f"{self.url}/oidc/v1/authorize",
                                  "token_endpoint": f"{self.url}/oidc/v1/token"})

    async def _oidc_token(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.token_delay)
        form = await request.post()
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        client = base64.b64decode(credential).decode() if scheme == "Basic" else ""
        if form.get("grant_type") != "client_credentials" or client != f"{self.client_id}:{self.client_secret}":
            return web.json_response({"error": "invalid_client", "error_description": "Client authentication failed"},
                                     status=401)
        return web.json_response(self._issue("oauth"))

    async def _aad_token(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.token_delay)
        form = await request.post()
        ok = (form.get("grant_type") == "client_credentials" and form.get("client_id") == self.azure_client_id
              and form.get("client_secret") == self.azure_client_secret and form.get("resource"))
        if not ok:
            return web.json_response({"error": "invalid_client", "error_description": "AADSTS7000215"}, status=401)
        return web.json_response(self._issue("aad"))

    # -- jobs API -------------------------------------------------------------------------------

    def _rejected(self, path: str, errors: list[str]) -> web.Response:
        with self._lock:
            self.rejected.append((path, errors))
        return self._error(400, "INVALID_PARAMETER_VALUE", "; ".join(errors))

    def _existing(self, token: str | None) -> web.Response | None:
        with self._lock:
            if token and token in self._by_token:
                return web.json_response({"run_id": self._by_token[token]})
        return None

    def _tasks(self, specs: list[dict[str, Any]]) -> list[SimTask]:
        return [
            SimTask(
                task_key=spec["task_key"],
                run_id=next(self._ids),
                spec=spec,
                behaviour=Behaviour.of(spec, self.default_seconds),
                depends_on=[d["task_key"] for d in spec.get("depends_on") or []],
                run_if=spec.get("run_if", "ALL_SUCCESS"),
            )
            for spec in specs
        ]

    def _create(self, run: SimRun) -> web.Response:
        with self._lock:
            self.runs[run.run_id] = run
            if run.token:
                self._by_token[run.token] = run.run_id
        return web.json_response({"run_id": run.run_id, **({"number_in_job": run.number_in_job}
                                                            if run.number_in_job else {})})

    async def _runs_submit(self, request: web.Request) -> web.Response:
        body = request[BODY]
        errors = validate_body(self._submit, body)
        if not errors and not body.get("tasks"):
            errors = ["tasks is required"]
        if not errors and len(body.get("idempotency_token") or "") > 64:
            errors = ["idempotency_token must be at most 64 characters"]
        if errors:
            return self._rejected(request.path, errors)
        if existing := self._existing(body.get("idempotency_token")):
            return existing
        name = body.get("run_name") or "Untitled"
        with self._lock:
            run = SimRun(run_id=next(self._ids), run_name=name, run_type="SUBMIT_RUN", tasks=self._tasks(body["tasks"]),
                         created=time.time(), token=body.get("idempotency_token"),
                         timeout_seconds=float(body.get("timeout_seconds") or 0), script=self._scripts.get(name))
        return self._create(run)

    async def _run_now_handler(self, request: web.Request) -> web.Response:
        body = request[BODY]
        errors = validate_body(self._run_now, body)
        if not errors and body.get("job_parameters") and any(
            k in body for k in ("notebook_params", "python_params", "jar_params", "python_named_params")
        ):
            errors = ["job_parameters cannot be used with legacy task parameters"]
        if not errors and "jar_params" in body and "notebook_params" in body:
            errors = ["jar_params and notebook_params cannot be used together"]
        if errors:
            return self._rejected(request.path, errors)
        job = self.jobs.get(body["job_id"])
        if job is None:
            return self._error(400, "INVALID_PARAMETER_VALUE", f"Job {body['job_id']} does not exist.")
        if existing := self._existing(body.get("idempotency_token")):
            return existing
        specs = [_override(dict(t), body) for t in job["settings"]["tasks"]]
        name = job["settings"]["name"]
        with self._lock:
            job["runs"] += 1
            run = SimRun(run_id=next(self._ids), run_name=name, run_type="JOB_RUN", tasks=self._tasks(specs),
                         created=time.time(), token=body.get("idempotency_token"), job_id=job["job_id"],
                         script=self._scripts.get(name), number_in_job=job["runs"])
        return self._create(run)

    def _find(self, request: web.Request, run_id: Any) -> tuple[SimRun | None, SimTask | None]:
        try:
            wanted = int(run_id)
        except (TypeError, ValueError):
            return None, None
        with self._lock:
            if wanted in self.runs:
                return self.runs[wanted], None
            for run in self.runs.values():
                for task in run.tasks:
                    if task.run_id == wanted:
                        return run, task
        return None, None

    @staticmethod
    def _params(request: web.Request) -> Mapping[str, str]:
        """The parameters of a GET: its query string, over a JSON body — which the real API also
        reads, and which the official provider's async hook sends instead of a query string."""
        body = request[BODY]
        if not isinstance(body, Mapping):
            return request.query
        fields = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in body.items()}
        return {**fields, **request.query}

    def _missing(self, run_id: Any) -> web.Response:
        # What the real API answers for an unknown run (not a 404).
        return self._error(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")

    async def _runs_get(self, request: web.Request) -> web.Response:
        q = self._params(request)
        run, task = self._find(request, q.get("run_id"))
        if run is None or task is not None:
            return self._missing(q.get("run_id"))
        now = time.time()
        data = self._run_json(run, now, with_tasks=True)
        start = int(q.get("page_token") or 0)
        tasks = data["tasks"]
        data["tasks"] = tasks[start:start + self.tasks_page_size]
        if start + self.tasks_page_size < len(tasks):
            data["next_page_token"] = str(start + self.tasks_page_size)
            data["has_more"] = True
        return web.json_response(data)

    async def _runs_get_output(self, request: web.Request) -> web.Response:
        run_id = self._params(request).get("run_id")
        run, task = self._find(request, run_id)
        if run is None:
            return self._missing(run_id)
        if task is None:
            if len(run.tasks) != 1:
                return self._error(400, "INVALID_PARAMETER_VALUE", "Retrieving the output of runs with multiple tasks "
                                   "is not supported. Please retrieve the output of each individual task run instead.")
            task = run.tasks[0]
        state = self._states(run, time.time())[task.task_key]
        out: dict[str, Any] = {"metadata": self._task_json(run, task, state)}
        if state.life_cycle not in TERMINAL:
            return web.json_response(out)
        seconds = task.behaviour.seconds
        if task.kind == "notebook_task":
            if state.result == "SUCCESS" and task.behaviour.result is not None:
                out["notebook_output"] = {"result": task.behaviour.result, "truncated": False}
        else:
            out["logs"] = f"starting {task.task_key}\nsleeping {seconds:g}s\n" + (
                "done\n" if task.behaviour.exit_code == 0 else "failing on purpose\n")
            out["logs_truncated"] = False
        if state.result == "FAILED":
            out["error"] = f"RuntimeError: failing on purpose (exit code {task.behaviour.exit_code})"
            frames = "".join(f'  File "/databricks/driver/app.py", line {n}, in step_{n}\n    step_{n + 1}()\n'
                             for n in range(1, 120))
            out["error_trace"] = ("Traceback (most recent call last):\n" + frames
                                  + f"RuntimeError: failing on purpose (exit code {task.behaviour.exit_code})")
        return web.json_response(out)

    async def _runs_cancel(self, request: web.Request) -> web.Response:
        body = request[BODY] or {}
        run, task = self._find(request, body.get("run_id"))
        if run is None or task is not None:
            return self._missing(body.get("run_id"))
        with self._lock:
            if self._run_state(run, time.time()).life_cycle not in TERMINAL and run.cancelled_at is None:
                run.cancelled_at = time.time()
        return web.json_response({})

    async def _runs_cancel_all(self, request: web.Request) -> web.Response:
        body = request[BODY] or {}
        now = time.time()
        with self._lock:
            for run in self.runs.values():
                if run.job_id == body.get("job_id") and run.cancelled_at is None \
                        and self._run_state(run, now).life_cycle not in TERMINAL:
                    run.cancelled_at = now
        return web.json_response({})

    async def _runs_list(self, request: web.Request) -> web.Response:
        q = self._params(request)
        active_only, completed_only = q.get("active_only") == "true", q.get("completed_only") == "true"
        if active_only and completed_only:
            return self._error(400, "INVALID_PARAMETER_VALUE", "active_only and completed_only cannot both be true")
        limit = int(q.get("limit") or 20) or 25
        if not 1 <= limit <= 25:
            return self._error(400, "INVALID_PARAMETER_VALUE", f"limit must be between 1 and 25, got {limit}")
        now = time.time()
        with self._lock:
            runs = sorted(self.runs.values(), key=lambda r: (r.created, r.run_id), reverse=True)
        selected = []
        for run in runs:
            life = self._run_state(run, now).life_cycle
            if (active_only and life in TERMINAL) or (completed_only and life not in TERMINAL):
                continue
            if q.get("job_id") and str(run.job_id) != q["job_id"]:
                continue
            if q.get("run_type") and run.run_type != q["run_type"]:
                continue
            selected.append(run)
        start = int(q.get("page_token") or 0)
        page = selected[start:start + limit]
        answer: dict[str, Any] = {"has_more": start + limit < len(selected)}
        if page:
            answer["runs"] = [self._run_json(r, now, with_tasks=q.get("expand_tasks") == "true") for r in page]
        if answer["has_more"]:
            answer["next_page_token"] = str(start + limit)
        if start:
            answer["prev_page_token"] = str(max(0, start - limit))
        return web.json_response(answer)

    async def _jobs_list(self, request: web.Request) -> web.Response:
        q = self._params(request)
        limit = int(q.get("limit") or 20)
        if not 1 <= limit <= 100:
            return self._error(400, "INVALID_PARAMETER_VALUE", f"limit must be between 1 and 100, got {limit}")
        name = q.get("name")
        with self._lock:
            jobs = [j for j in self.jobs.values() if name is None or j["settings"]["name"].lower() == name.lower()]
        start = int(q.get("page_token") or 0)
        page = jobs[start:start + limit]
        answer: dict[str, Any] = {"has_more": start + limit < len(jobs)}
        if page:
            answer["jobs"] = [{"job_id": j["job_id"], "settings": {"name": j["settings"]["name"]},
                               "creator_user_name": j["creator_user_name"]} for j in page]
        if answer["has_more"]:
            answer["next_page_token"] = str(start + limit)
        return web.json_response(answer)

    # -- simulation -----------------------------------------------------------------------------

    def _task_states(self, run: SimRun, now: float) -> dict[str, TaskState]:
        """Each task's state at ``now``, from the clock, dependencies, timeout and cancel."""
        states: dict[str, TaskState] = {}
        cutoff = run.cancelled_at
        timeout_at = run.created + run.timeout_seconds if run.timeout_seconds else None
        pending = list(run.tasks)
        while pending:
            progressed = False
            for task in list(pending):
                deps = [states.get(d) for d in task.depends_on]
                if any(d is None for d in deps):
                    continue
                pending.remove(task)
                progressed = True
                states[task.task_key] = self._one_task(task, [d for d in deps if d], run.created, now, cutoff,
                                                       timeout_at)
            if not progressed:  # a cycle or a missing dependency: leave the rest pending
                for task in pending:
                    states[task.task_key] = TaskState("PENDING")
                break
        return states

    @staticmethod
    def _one_task(task: SimTask, deps: list[TaskState], created: float, now: float, cancelled: float | None,
                  timeout_at: float | None) -> TaskState:
        if any(d.ended is None for d in deps):
            if cancelled is not None and now >= cancelled + CANCEL_SECONDS:
                return TaskState("TERMINATED", "CANCELED", "Run cancelled.", ended=cancelled + CANCEL_SECONDS)
            return TaskState("BLOCKED" if deps else "PENDING")
        start = max([created, *(d.ended for d in deps if d.ended is not None)])
        failed_deps = [d for d in deps if d.result not in ("SUCCESS", "SUCCESS_WITH_FAILURES")]
        if failed_deps and task.run_if != "ALL_DONE":
            cancelled_dep = any(d.result in ("CANCELED", "UPSTREAM_CANCELED") for d in failed_deps)
            return TaskState("TERMINATED", "UPSTREAM_CANCELED" if cancelled_dep else "UPSTREAM_FAILED",
                             "Upstream task failed." if not cancelled_dep else "Upstream task cancelled.",
                             ended=start)
        running_at = start + task.behaviour.pending
        ends_at = running_at + task.behaviour.seconds
        for stop, result, message in ((timeout_at, "TIMEDOUT", "Run timed out."),
                                      (cancelled, "CANCELED", "Run cancelled.")):
            if stop is not None and stop < ends_at:
                if now < stop:
                    break
                if now < stop + CANCEL_SECONDS:
                    return TaskState("TERMINATING", started=running_at if stop >= running_at else None,
                                     cancelled=True)
                return TaskState("TERMINATED", result, message, started=running_at, ended=stop + CANCEL_SECONDS)
        if now < running_at:
            return TaskState("PENDING")
        if now < ends_at:
            return TaskState("RUNNING", started=running_at)
        if task.behaviour.exit_code == 0:
            return TaskState("TERMINATED", "SUCCESS", "", started=running_at, ended=ends_at)
        return TaskState("TERMINATED", "FAILED", "Workload failed, see run output for details", started=running_at,
                         ended=ends_at)

    def _phase(self, run: SimRun, now: float) -> Phase | None:
        if not run.script:
            return None
        elapsed = now - run.created
        for phase in run.script:
            if phase.seconds is None or elapsed < phase.seconds:
                return phase
            elapsed -= phase.seconds
        return run.script[-1]

    def _states(self, run: SimRun, now: float) -> dict[str, TaskState]:
        """Task states; a scripted run's tasks mirror the run."""
        if run.script:
            state = self._run_state(run, now)
            return {t.task_key: state for t in run.tasks}
        return self._task_states(run, now)

    def _run_state(self, run: SimRun, now: float) -> TaskState:
        phase = self._phase(run, now)
        if phase is not None:
            return TaskState(phase.life_cycle, phase.result, phase.message)
        tasks = self._task_states(run, now)
        values = list(tasks.values())
        if all(v.ended is not None for v in values):
            ended = max(v.ended for v in values if v.ended is not None)
            if now < ended + TERMINATING_SECONDS:  # cleaning up after the work: a cancel only if it was one
                stopped = run.cancelled_at is not None or any(v.result == "TIMEDOUT" for v in values)
                return TaskState("TERMINATING", cancelled=stopped)
            results = {k: v.result for k, v in tasks.items()}
            if all(r == "SUCCESS" for r in results.values()):
                return TaskState("TERMINATED", "SUCCESS", "", ended=ended)
            if run.cancelled_at is not None:
                return TaskState("TERMINATED", "CANCELED", "Run cancelled.", ended=ended)
            if any(r == "TIMEDOUT" for r in results.values()):
                return TaskState("TERMINATED", "TIMEDOUT", "Run timed out.", ended=ended)
            dependents = {d for t in run.tasks for d in t.depends_on}
            leaves = [t.task_key for t in run.tasks if t.task_key not in dependents]
            if all(results[k] == "SUCCESS" for k in leaves):
                return TaskState("TERMINATED", "SUCCESS_WITH_FAILURES", "Some tasks failed.", ended=ended)
            return TaskState("TERMINATED", "FAILED", "Workload failed, see run output for details", ended=ended)
        if run.cancelled_at is not None and now >= run.cancelled_at:
            return TaskState("TERMINATING", cancelled=True)
        if any(v.life_cycle in ("RUNNING", "TERMINATING") or v.ended is not None for v in values):
            return TaskState("RUNNING")
        return TaskState("PENDING")

    def _state_objects(self, state: TaskState, phase: Phase | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "state" in self.state_fields:
            classic: dict[str, Any] = {"life_cycle_state": state.life_cycle, "state_message": state.message,
                                       "user_cancelled_or_timedout": state.cancelled
                                       or state.result in ("CANCELED", "TIMEDOUT")}
            if state.result:
                classic["result_state"] = state.result
            if phase and phase.queue_reason:
                classic["queue_reason"] = phase.queue_reason
            out["state"] = classic
        if "status" in self.state_fields:
            v2_state = {"WAITING_FOR_RETRY": "WAITING", "SKIPPED": "TERMINATED",
                        "INTERNAL_ERROR": "TERMINATED"}.get(state.life_cycle, state.life_cycle)
            status: dict[str, Any] = {"state": v2_state}
            if v2_state == "TERMINATED":
                code = (phase.code if phase and phase.code else None) or _V2_CODES.get(
                    state.result or state.life_cycle, "RUN_EXECUTION_ERROR")
                status["termination_details"] = {
                    "code": code, "type": "SUCCESS" if code in ("SUCCESS", "SUCCESS_WITH_FAILURES") else "CLIENT_ERROR",
                    "message": state.message,
                }
            if phase and phase.queue_reason:
                status["queue_details"] = {"code": "ACTIVE_RUNS_LIMIT_REACHED", "message": phase.queue_reason}
            out["status"] = status
        return out

    def _page_url(self, run: SimRun, run_id: int) -> str:
        return f"{self.url}/?o={WORKSPACE_ID}#job/{run.job_id or 'submit'}/run/{run_id}"

    def _task_json(self, run: SimRun, task: SimTask, state: TaskState) -> dict[str, Any]:
        data = {
            **{k: v for k, v in task.spec.items() if k not in ("depends_on",)},
            "task_key": task.task_key,
            "run_id": task.run_id,
            "run_page_url": self._page_url(run, task.run_id),
            "attempt_number": 0,
            "start_time": int(run.created * 1000),
            "end_time": int(state.ended * 1000) if state.ended else 0,
            **self._state_objects(state),
        }
        if task.depends_on:
            data["depends_on"] = [{"task_key": d} for d in task.depends_on]
        return data

    def _run_json(self, run: SimRun, now: float, *, with_tasks: bool) -> dict[str, Any]:
        state = self._run_state(run, now)
        phase = self._phase(run, now)
        data: dict[str, Any] = {
            "run_id": run.run_id,
            "run_name": run.run_name,
            "run_type": run.run_type,
            "run_page_url": self._page_url(run, run.run_id),
            "creator_user_name": self.username,
            "number_in_job": run.number_in_job or run.run_id,
            "attempt_number": 0,
            "start_time": int(run.created * 1000),
            "end_time": int(state.ended * 1000) if state.ended and state.life_cycle in TERMINAL else 0,
            **self._state_objects(state, phase),
        }
        if run.job_id:
            data["job_id"] = run.job_id
        if with_tasks:
            states = self._states(run, now)
            data["tasks"] = [self._task_json(run, t, states[t.task_key]) for t in run.tasks]
        return data


#: classic result (or terminal life cycle) → status.termination_details.code
_V2_CODES = {
    "SUCCESS": "SUCCESS",
    "SUCCESS_WITH_FAILURES": "SUCCESS_WITH_FAILURES",
    "FAILED": "RUN_EXECUTION_ERROR",
    "CANCELED": "USER_CANCELED",
    "UPSTREAM_CANCELED": "CANCELED",
    "SKIPPED": "SKIPPED",
    "INTERNAL_ERROR": "INTERNAL_ERROR",
    "DISABLED": "DISABLED",
    "MAXIMUM_CONCURRENT_RUNS_REACHED": "MAX_CONCURRENT_RUNS_EXCEEDED",
}


def _override(task: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """A job's task with the run-now parameters applied, as the Jobs service applies them."""
    task = {k: (dict(v) if isinstance(v, dict) else v) for k, v in task.items()}
    if "notebook_task" in task and body.get("notebook_params"):
        task["notebook_task"]["base_parameters"] = {**task["notebook_task"].get("base_parameters", {}),
                                                    **body["notebook_params"]}
    if "spark_python_task" in task and body.get("python_params") is not None:
        task["spark_python_task"]["parameters"] = list(body["python_params"])
    if "spark_jar_task" in task and body.get("jar_params") is not None:
        task["spark_jar_task"]["parameters"] = list(body["jar_params"])
    if "python_wheel_task" in task and body.get("python_named_params"):
        task["python_wheel_task"]["named_parameters"] = dict(body["python_named_params"])
    if body.get("job_parameters"):
        params = body["job_parameters"]
        if "notebook_task" in task:
            task["notebook_task"]["base_parameters"] = {**task["notebook_task"].get("base_parameters", {}), **params}
        for kind in ("spark_python_task", "spark_jar_task"):
            if kind in task and "seconds" in params:
                task[kind]["parameters"] = [str(params["seconds"]), str(params.get("exit_code", "0"))]
    return task


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.servers.databricks_server --port 8999``: serve until Ctrl-C (``./dev stack`` runs
    it with the example DAGs' saved job, see airflow_spark_async_devtools/stack/emulators.py)."""
    import argparse
    import contextlib
    import threading

    parser = argparse.ArgumentParser(description="Databricks Jobs API server for tests")
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--default-seconds", type=float, default=10.0, help="how long a run's tasks run")
    args = parser.parse_args(argv)
    with DatabricksServer(port=args.port, default_seconds=args.default_seconds) as server:
        print(f"Databricks test server at {server.url} (PAT {server.pat}; OAuth M2M {server.client_id}/"
              f"{server.client_secret})", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
