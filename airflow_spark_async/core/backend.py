"""The small protocol a backend implements, the typed status it returns, and the two calls of it
the core makes everywhere (:func:`submit_job`, :func:`cancel_job`).

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
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from airflow_spark_async.core.errors import ConfigurationError, JobNotFoundError
from airflow_spark_async.core.states import JobState

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = [
    "Backend",
    "JobStatus",
    "RequestT",
    "StatusMany",
    "cancel_job",
    "split_statuses",
    "status_if_carrying",
    "submit_job",
]

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
        polled with another's token. Backends whose credentials can differ per connection fold a
        digest of them in (never the secret itself); the default is :attr:`watch_key`."""
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
