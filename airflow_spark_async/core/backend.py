"""The small protocol a backend implements, and the vocabulary it shares with the core: the five
states (:class:`JobState`), the typed status (:class:`JobStatus`), the deterministic job key
(:func:`job_key`), the two calls the core makes everywhere (:func:`submit_job`,
:func:`cancel_job`) and the lazy exports of a backend package (:func:`lazy_exports`).

Everything here is async. The worker reaches a backend through one sync bridge
(:func:`airflow_spark_async.core.sync.run_sync`), so there are no sync/async twin
methods that could drift apart — the classic smell of the official providers, where the
async path of a hook misses a retry case its sync twin has.

A backend is built from an Airflow connection id plus JSON-safe options; the same pair
rebuilds it in the triggerer after a restart, so a trigger's kwargs never hold secrets.

A backend is generic in its *request*: whatever its operators build and its ``submit`` sends — a
plain dataclass of the backend (a Databricks run, EMR steps, a Serverless job run), or the portable
:class:`~airflow_spark_async.core.spec.SparkJob` itself where that is all the API needs (Livy, Spark
standalone). The core never looks inside a request, so it need not be a ``SparkJob``.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import hashlib
import importlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from airflow_spark_async.core.errors import ConfigurationError, JobNotFoundError

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = [
    "TERMINAL_STATES",
    "Backend",
    "JobKey",
    "JobState",
    "JobStatus",
    "RequestT",
    "StatusMany",
    "cancel_job",
    "credential_digest",
    "deployment_salt",
    "find_key",
    "job_key",
    "job_key_from_context",
    "key_family",
    "lazy_exports",
    "parse_key",
    "split_statuses",
    "status_if_carrying",
    "submit_job",
]


#: salts :func:`credential_digest`; made once per process and never persisted
_DIGEST_SALT = os.urandom(16)


def _plain(value: object) -> object:
    """What :func:`credential_digest` encodes of a value JSON cannot: a mapping as a dict (so its
    order does not count), anything else as its text."""
    return dict(value) if isinstance(value, Mapping) else str(value)


def credential_digest(*credentials: object) -> str:
    """A digest that tells two sets of credentials apart without holding them: what a backend folds
    into its :meth:`Backend.identity`, and how it notices a rotation.

    sha256 over a random salt made once per process: digests are only compared inside one process
    (watchers, throttle gates and clients are per process), and the salt makes a logged digest
    useless for guessing a weak secret offline. Mappings of any type are compared regardless of their
    order (a read-only mapping of headers too); other values that are not JSON are ``str()``-ed.
    Twelve hex digits: enough to tell the credentials of one process apart, short enough to read in a
    log line."""
    raw = json.dumps(credentials, sort_keys=True, default=_plain)
    return hashlib.sha256(_DIGEST_SALT + raw.encode()).hexdigest()[:12]


# -------------------- states ----------------------------------------------------------------
# The five states every backend maps its own life cycle onto.
#
# Backends speak many dialects (Livy's ``dead``, Databricks' ``TERMINATED``/``FAILED``,
# Spark's ``RELAUNCHING``); the core only ever reasons about these. A state a backend
# does not recognise maps to :attr:`JobState.PENDING` with the raw value kept for the log,
# so a new server-side state never crashes a poll loop.
#
# ``CANCELLING`` is not an end — the job may still run for a while — but it is never a job to
# reattach to: someone (a user's clear, a kill, the deadline) already decided it must stop. A
# new try cancels it if need be and submits its own.

class JobState(str, enum.Enum):
    """Backend-neutral state of one Spark job."""

    PENDING = "pending"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: frozenset[JobState] = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


log = logging.getLogger(__name__)

#: what a backend's ``submit`` takes: the backend's own request type
RequestT = TypeVar("RequestT")


@dataclasses.dataclass(frozen=True)
class JobStatus:
    """One observation of a job, parsed at the edge into typed fields.

    :param job_id: the backend's id (Livy batch id, driver id, run id, step id).
    :param state: the backend-neutral state.
    :param backend_state: the backend's own word for it (``RELAUNCHING``, ``dead`` …), for logs.
    :param message: the backend's explanation, if it gave one (failure reason, state message).
    :param diagnostics: extra detail worth showing on failure (error traces, failure details).
    :param links: name → URL of pages about this job (UI, driver log).
    :param key: the key the job was submitted with, where the backend's answer carries it (a
        Livy batch name, a step name, a cluster tag); ``None`` when it does not say. The core
        compares it before acting on a job, because some servers reuse ids (Livy after a
        restart without recovery).
    """

    job_id: str
    state: JobState
    backend_state: str
    message: str | None = None
    diagnostics: str | None = None
    links: Mapping[str, str] = dataclasses.field(default_factory=dict)
    key: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    @property
    def may_run(self) -> bool:
        """Not ended yet: running, pending or still being cancelled."""
        return not self.state.is_terminal


#: what :meth:`Backend.status_many` returns: per job id its status, or the error of that one job (a
#: ``JobNotFoundError`` for an id the list says is gone must not fail the other jobs of the batch)
StatusMany = Mapping[str, "JobStatus | Exception"]


class Backend(abc.ABC, Generic[RequestT]):
    """Submit, watch and cancel Spark jobs on one endpoint.

    Subclasses set :attr:`name` and implement the abstract methods, with exactly these signatures:
    ``submit(request, *, key, attempt)``, ``status(job_id)``, ``cancel(job_id, *, key)``.
    ``status_many``, ``logs``, ``find_jobs`` and ``links`` are optional: the core falls back to
    per-job ``status`` and to its Airflow-side key ledger when a backend's API cannot do them.
    A backend that owns clients (sessions, SDK clients) closes them in :meth:`aclose`.
    """

    #: short name used in logs, XCom keys and events ("standalone", "livy" …)
    name: ClassVar[str]
    #: whether :meth:`find_jobs` can look jobs up by their key (else the core's ledger is used)
    supports_find_by_key: ClassVar[bool] = False
    #: whether the API itself deduplicates a resubmission (an idempotency or client token): then
    #: the core skips its after-submit race check. Such a backend's ``submit`` must take
    #: ``attempt`` (the try number) and derive its token from ``key`` *and* ``attempt``, so that a
    #: retry is never handed an earlier try's ended job (#64828).
    idempotent_submit: ClassVar[bool] = False

    @classmethod
    @abc.abstractmethod
    async def from_connection(cls, conn: Connection, options: Mapping[str, Any]) -> Backend[Any]:
        """Build a backend from an Airflow connection and options; blocking work goes to a thread."""

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        """Reject unknown or invalid options at DAG parse time; the default accepts none."""
        if options:
            raise ConfigurationError(f"{cls.__name__} takes no backend options, got {sorted(options)}")

    @property
    @abc.abstractmethod
    def watch_key(self) -> str:
        """Identifies the endpoint: triggers whose backends share it share one watcher."""

    def identity(self) -> str:
        """Endpoint *and* credentials: watchers are keyed by it, so jobs of one principal are never
        polled with another's token. Backends whose credentials can differ per connection fold
        :func:`credential_digest` of them in (never the secret itself); the default is :attr:`watch_key`."""
        return self.watch_key

    @abc.abstractmethod
    async def submit(self, request: RequestT, *, key: str, attempt: int) -> JobStatus:
        """Submit ``request`` tagged with ``key`` and return its first status.

        ``attempt`` is the task's try number. A backend whose API deduplicates by a token
        (:attr:`idempotent_submit`) derives the token from ``key`` *and* ``attempt``: a resend
        within one try gets the same job back, a retry never an earlier try's ended job (#64828).
        """

    @abc.abstractmethod
    async def status(self, job_id: str) -> JobStatus:
        """Current status of one job; raises ``JobNotFoundError`` if the backend forgot it."""

    async def status_many(self, job_ids: Sequence[str]) -> StatusMany | None:
        """Statuses of many jobs in as few requests as the API allows.

        Return ``None`` when the API cannot list. Per id, the value is its status or the error of
        that job alone (a ``JobNotFoundError``), so one bad id never fails the batch; raise only
        when the list itself failed. Ids missing from the mapping are asked for one by one with
        :meth:`status`.
        """
        return None

    @abc.abstractmethod
    async def cancel(self, job_id: str, *, key: str | None) -> None:
        """Ask the backend to stop the job; must not raise if it already finished.

        ``key`` is the key the core expects the job to carry (``None`` when it does not know):
        a backend whose server may reuse ids checks it (:func:`status_if_carrying`) and leaves a
        job of another key alone.
        """

    async def logs(self, job_id: str, *, tail_lines: int) -> str | None:
        """The last ``tail_lines`` lines of the driver's log, or ``None`` if unavailable."""
        return None

    async def find_by_key(self, key: str) -> JobStatus | None:
        """The newest job submitted with exactly ``key``, if the API can find it."""
        from airflow_spark_async.core.keys import key_family

        for status in await self.find_jobs(key_family(key)):
            if status.key == key:
                return status
        return None

    async def find_jobs(self, family: str) -> Sequence[JobStatus]:
        """Every job the backend still knows whose key belongs to ``family`` (any generation),
        newest first, each with :attr:`JobStatus.key` set. Only for ``supports_find_by_key``."""
        raise NotImplementedError

    def links(self, job_id: str) -> dict[str, str]:
        """Pages about a job that can be built without asking the backend."""
        return {}

    async def probe(self) -> str:
        """One cheap, read-only request that needs the connection's endpoint *and* credentials;
        returns what it found, in a sentence for the user (``"Livy at …: 3 batches"``). Airflow's
        Test button runs it (:func:`~airflow_spark_async.core.runtime.check_connection`); raise the
        core's errors, whose messages say what is wrong."""
        raise NotImplementedError(f"{type(self).__name__} cannot test its connection")

    async def aclose(self) -> None:
        """Release what this backend owns (clients, sessions) when the core drops it; default: nothing."""


def split_statuses(listed: StatusMany | None) -> tuple[dict[str, JobStatus], dict[str, Exception]]:
    """A :meth:`Backend.status_many` answer as (statuses, per-job errors)."""
    statuses: dict[str, JobStatus] = {}
    errors: dict[str, Exception] = {}
    for job_id, outcome in (listed or {}).items():
        if isinstance(outcome, Exception):
            errors[job_id] = outcome
        else:
            statuses[job_id] = outcome
    return statuses, errors


async def submit_job(backend: Backend[RequestT], request: RequestT, key: str, attempt: int) -> JobStatus:
    """``backend.submit(request, key=key, attempt=attempt)``: the one way the core submits."""
    return await backend.submit(request, key=key, attempt=attempt)


async def cancel_job(backend: Backend[Any], job_id: str, key: str | None) -> None:
    """``backend.cancel(job_id, key=key)``: the one way the core cancels. Passing the expected key
    lets a backend whose server reuses ids leave someone else's job alone."""
    await backend.cancel(job_id, key=key)


async def status_if_carrying(
    backend: Backend, job_id: str, key: str, what: str, *, require_key: bool = False
) -> JobStatus | None:
    """The job's status when it may be cancelled for ``key``, else ``None`` (logged): the backend no
    longer knows the job, or the job carries another key — a server that reuses ids (Livy after a
    restart without recovery) would otherwise have us cancel someone else's job. With
    ``require_key`` a job that carries no key at all is not ours either.

    For backends whose ``cancel`` takes ``key`` (the core passes it when it knows the key).
    """
    try:
        status = await backend.status(job_id)
    except JobNotFoundError as exc:
        log.info("Nothing to cancel for %s: %s", what, exc)
        return None
    if status.key != key and (require_key or status.key is not None):
        log.warning("Not cancelling %s: it carries the key %s, not %s", what, status.key, key)
        return None
    return status


# -------------------- keys ------------------------------------------------------------------
# The deterministic key that makes a retry reattach instead of submitting twice.
#
# A key has two parts, ``asa-<family>-<generation>``:
#
# * the **family** hashes the deployment salt, the DAG, task, run id, map index *and the DAG
#   run instance* (the run's start date). Every try of one task instance of one DAG run shares
#   it; a DAG run deleted and re-created with the same run id gets a new one, and so does the
#   same DAG in another deployment that sets another salt — so neither can ever reattach to,
#   or be handed back by an idempotency token, a job that belongs to someone else;
# * the **generation** is the first try number of the task instance's current clear cycle
#   (Airflow's own ``max_tries - retries + 1``). Retries keep it, so a retry reattaches to the
#   job of an earlier try that still runs; a clear changes it, so the new try never reattaches
#   to the old job — it cancels it as stale and submits a new one. Clear means restart.
#
# Keys are short and made of ``[a-z0-9-]`` so every backend can carry one: a Livy batch name,
# an EMR client token or step name (<= 64 chars), a Databricks idempotency token (<= 64 chars),
# a Spark app name, a cluster tag.
#
# The salt is ``[airflow_spark_async] deployment_salt`` (environment variable
# ``AIRFLOW__AIRFLOW_SPARK_ASYNC__DEPLOYMENT_SALT``): give every deployment that shares a Livy
# server, an EMR cluster or a Databricks workspace a different one.

KEY_PREFIX = "asa-"
_KEY = re.compile(r"^(asa-[0-9a-f]{24})-(\d+)$")
_KEY_IN_TEXT = re.compile(r"asa-[0-9a-f]{24}-\d+")


@dataclasses.dataclass(frozen=True)
class JobKey:
    """A parsed key: its family (shared by every try of one task instance) and generation."""

    family: str
    generation: int

    def __str__(self) -> str:
        return f"{self.family}-{self.generation}"


def parse_key(key: str) -> JobKey | None:
    """The parts of a key of this release, or ``None`` for anything else (an older key, a name)."""
    match = _KEY.match(key)
    return JobKey(match.group(1), int(match.group(2))) if match else None


def key_family(key: str) -> str:
    """The family part of a key (a key of an older release is its own family)."""
    parsed = parse_key(key)
    return parsed.family if parsed else key


def find_key(text: str | None) -> str | None:
    """The key carried in a job name or tag (``etl-asa-…-1``, ``etl [asa-…-1]``, ``etl-asa-…-1-2``
    where ``-2`` is a backend's resubmission suffix), or ``None``."""
    match = _KEY_IN_TEXT.search(text or "")
    return match.group(0) if match else None


def deployment_salt() -> str:
    """The configured per-deployment salt ('' when unset)."""
    try:
        from airflow.configuration import conf

        return conf.get("airflow_spark_async", "deployment_salt", fallback="") or ""
    except Exception:  # outside a configured Airflow (a bare script): no salt
        return ""


def job_key(
    dag_id: str,
    task_id: str,
    run_id: str,
    map_index: int | None = -1,
    *,
    run_instance: str = "",
    generation: int = 1,
    salt: str = "",
) -> str:
    """The key of one clear cycle of one task instance of one DAG run instance."""
    raw = "\x1f".join((salt, dag_id, task_id, run_id, str(-1 if map_index is None else map_index), run_instance))
    return str(JobKey(KEY_PREFIX + hashlib.sha256(raw.encode()).hexdigest()[:24], int(generation)))


def _run_instance(dag_run: Any) -> str:
    """What tells this DAG run apart from a deleted one of the same run id: its start date."""
    if dag_run is None:
        return ""
    when = getattr(dag_run, "start_date", None) or getattr(dag_run, "run_after", None)
    return when.isoformat() if hasattr(when, "isoformat") else str(when or "")


def _generation(ti: Any) -> int:
    """The first try number of the task instance's current clear cycle."""
    max_tries = getattr(ti, "max_tries", None)
    task = getattr(ti, "task", None)
    retries = getattr(task, "retries", None)
    if isinstance(max_tries, int) and isinstance(retries, int) and not isinstance(max_tries, bool):
        return max(1, max_tries - retries + 1)
    return 1


def job_key_from_context(context: Mapping[str, Any]) -> str:
    ti = context["ti"]
    return job_key(
        ti.dag_id,
        ti.task_id,
        ti.run_id,
        getattr(ti, "map_index", -1),
        run_instance=_run_instance(context.get("dag_run")),
        generation=_generation(ti),
        salt=deployment_salt(),
    )


# -------------------- lazy ------------------------------------------------------------------
# Lazy package exports, for backend packages that Airflow imports while its configuration loads.
#
# Airflow imports each backend's ``provider_info`` module from inside its own configuration
# bootstrap, which imports the backend *package* first. A package ``__init__`` that imported its
# operators would import Airflow half-initialised; so packages export their public names through
# this ``__getattr__`` instead, and nothing is imported until a name is used.

def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``name`` from ``package.<exports[name]>`` on first use."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
