"""EMR clusters as jobs: create one (``RunJobFlow``), watch its state, terminate it.

Why clusters are a backend too: "create a cluster and wait until it is ready", "wait until it
terminated" and "terminate it when the task is killed" are the same submit / watch / cancel
cycle as a Spark job, so the core's deadline, back-off, restart and kill handling serve them
unchanged.

**Found again by its tag.** ``RunJobFlow`` has no client token: a lost answer, a worker that
died before recording the id, or two tries at once could each leave a billed cluster behind.
So every cluster is created with the tag ``airflow-spark-async:key`` = the task's key, and a
try looks its key family up before creating anything: ``ListClusters`` of the active states
(it shows no tags), then ``DescribeCluster`` of each listed cluster not described before (its
``Tags``; a cluster's key tag never changes, so what was read is remembered per shared client).
``supports_find_by_key`` is therefore true. What this cannot see: a cluster that already
ended (not in the active states — nothing to reattach to or cancel), and, for a moment after
``RunJobFlow``, a cluster ``ListClusters`` does not list yet (EMR's listing is eventually
consistent); ``idempotent_submit`` is false, so the core checks for a racing duplicate after
creating.

How cluster states map: ``STARTING``/``BOOTSTRAPPING`` are pending, ``RUNNING``/``WAITING``
running, ``TERMINATING`` cancelling (the cluster is going away: never reattached to, watched
until it ended), ``TERMINATED_WITH_ERRORS`` failed, and ``TERMINATED`` succeeded only when the
reason is ``ALL_STEPS_COMPLETED`` (the cluster did its work and shut down) — else it was
terminated by someone (cancelled). Watches that end earlier, at ``WAITING`` for instance, use
the trigger's ``stop_states``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow_spark_async.core.backend import JobState, JobStatus, status_if_carrying
from airflow_spark_async.core.errors import ConfigurationError, JobNotFoundError, RequestRejected, ServerError
from airflow_spark_async.core.runtime import Runtime
from airflow_spark_async.emr.aws import AwsBackend, AwsOptions
from airflow_spark_async.emr.ids import in_family

__all__ = [
    "ACTIVE_CLUSTER_STATES",
    "CLUSTER_STATES",
    "ClusterInfo",
    "EmrClusterBackend",
    "JobFlowRequest",
    "cluster_id_by_name",
    "cluster_links",
    "describe_cluster",
]

CLUSTER_STATES: dict[str, JobState] = {
    "STARTING": JobState.PENDING,
    "BOOTSTRAPPING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "WAITING": JobState.RUNNING,
    "TERMINATING": JobState.CANCELLING,
    "TERMINATED": JobState.CANCELLED,  # unless ALL_STEPS_COMPLETED, see ClusterInfo.job_state
    "TERMINATED_WITH_ERRORS": JobState.FAILED,
}
ACTIVE_CLUSTER_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING", "TERMINATING")
ENDED_CLUSTER_STATES = ("TERMINATED", "TERMINATED_WITH_ERRORS")
#: the tag that records which task instance created a cluster
KEY_TAG = "airflow-spark-async:key"
#: ListClusters pages hold 50 clusters
LIST_PAGE = 50
#: DescribeCluster calls in flight at once while looking a key up
DESCRIBE_CONCURRENCY = 5

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """The parts of ``DescribeCluster`` / ``ListClusters`` the backends use, parsed at the edge."""

    id: str
    name: str
    state: str
    reason_code: str | None = None
    reason_message: str | None = None
    log_uri: str | None = None
    errors: tuple[str, ...] = ()
    #: the value of the key tag (``DescribeCluster`` only: ``ListClusters`` shows no tags)
    key: str | None = None

    @classmethod
    def parse(cls, data: Any) -> ClusterInfo:
        if not isinstance(data, Mapping) or not data.get("Id") or not isinstance(data.get("Status"), Mapping):
            raise ServerError(f"EMR answered a cluster without Id or Status: {str(data)[:200]!r}")
        status = data["Status"]
        reason = status.get("StateChangeReason") or {}
        errors = tuple(
            " ".join(str(e.get(k)) for k in ("ErrorCode", "ErrorMessage") if e.get(k))
            for e in status.get("ErrorDetails") or []
            if isinstance(e, Mapping)
        )
        return cls(
            id=str(data["Id"]),
            name=str(data.get("Name") or ""),
            state=str(status.get("State") or "UNKNOWN"),
            reason_code=reason.get("Code") or None,
            reason_message=reason.get("Message") or None,
            log_uri=data.get("LogUri") or None,
            errors=errors,
            key=next((str(t.get("Value")) for t in data.get("Tags") or []
                      if isinstance(t, Mapping) and t.get("Key") == KEY_TAG and t.get("Value")), None),
        )

    @property
    def ended(self) -> bool:
        return self.state in ENDED_CLUSTER_STATES

    @property
    def reason(self) -> str | None:
        parts = [p for p in (self.reason_code, self.reason_message) if p]
        return ": ".join(parts) or None

    @property
    def job_state(self) -> JobState:
        if self.state == "TERMINATED" and self.reason_code == "ALL_STEPS_COMPLETED":
            return JobState.SUCCEEDED
        return CLUSTER_STATES.get(self.state, JobState.PENDING)


async def describe_cluster(backend: AwsBackend[Any], cluster_id: str) -> ClusterInfo:
    """``DescribeCluster``; an id EMR does not know raises ``JobNotFoundError``."""
    try:
        answer = await backend.call("describe_cluster", ClusterId=cluster_id)
    except RequestRejected as exc:  # EMR: InvalidRequestException "Cluster id 'j-…' is not valid."
        raise JobNotFoundError(f"EMR does not know cluster {cluster_id}: {exc}", status=exc.status) from exc
    return ClusterInfo.parse(answer.get("Cluster"))


def cluster_links(backend: AwsBackend[Any], cluster_id: str, log_uri: str | None = None,
                  log_suffix: str = "") -> dict[str, str]:
    """Console pages of a cluster, and of its logs on S3 when the cluster has a log URI."""
    links = {"emr_cluster": f"{backend.console}/emr/home?region={backend.region}#/clusterDetails/{cluster_id}"}
    if log_uri and log_uri.startswith(("s3://", "s3n://")):
        links["emr_logs"] = backend.s3_console_url(log_uri, f"{cluster_id}/{log_suffix}")
    return links


@dataclasses.dataclass(frozen=True)
class ClusterOptions(AwsOptions):
    """``stop_states`` is read by the trigger: the cluster states that end a watch early."""

    stop_states: list[str] | None = None


@dataclasses.dataclass(frozen=True)
class JobFlowRequest:
    """What :class:`~airflow_spark_async.emr.operators.EmrCreateJobFlowOperator` submits:
    the ``RunJobFlow`` arguments (the EMR connection's extra, overridden by the task's)."""

    config: Mapping[str, Any]


class EmrClusterBackend(AwsBackend[JobFlowRequest]):
    """EMR clusters: create (``RunJobFlow``), watch (``DescribeCluster``), cancel = terminate."""

    name: ClassVar[str] = "emr_cluster"
    service: ClassVar[str] = "emr"
    supports_find_by_key: ClassVar[bool] = True
    Options: ClassVar[type[AwsOptions]] = ClusterOptions

    async def probe(self) -> str:
        answer = await self.call("list_clusters", ClusterStates=list(ACTIVE_CLUSTER_STATES))
        return f"EMR in {self.region} answered: {len(answer.get('Clusters') or [])} active cluster(s) on its first page"

    async def submit(self, request: JobFlowRequest, *, key: str, attempt: int = 1) -> JobStatus:
        if not isinstance(request, JobFlowRequest):
            raise RequestRejected("the EMR cluster backend creates clusters: give a JobFlowRequest, not a SparkJob")
        config = dict(request.config)
        tags = [t for t in config.get("Tags") or [] if isinstance(t, Mapping) and t.get("Key") != KEY_TAG]
        config["Tags"] = [*tags, {"Key": KEY_TAG, "Value": key}]
        answer = await self.call("run_job_flow", **config)
        cluster_id = answer.get("JobFlowId")
        if not cluster_id:
            raise ServerError(f"EMR RunJobFlow answered without a JobFlowId: {answer!r}")
        return JobStatus(cluster_id, JobState.PENDING, "STARTING", message=f"created cluster {config.get('Name')!r}",
                         links=cluster_links(self, cluster_id, config.get("LogUri")))

    async def status(self, job_id: str) -> JobStatus:
        info = await describe_cluster(self, job_id)
        self._known_keys[info.id] = info.key
        return self._status(info)

    def _status(self, info: ClusterInfo, key: str | None = None) -> JobStatus:
        return JobStatus(
            info.id,
            info.job_state,
            info.state,
            message=info.reason,
            diagnostics="\n".join(info.errors) or None,
            links=cluster_links(self, info.id, info.log_uri),
            key=key or info.key,
        )

    @property
    def _known_keys(self) -> dict[str, str | None]:
        """Cluster id -> its key tag (``None``: it has none), for every cluster described through the
        shared client: the tag is set at creation and never changes, so it is read once."""
        return Runtime.current().shared(f"emr.cluster_keys|{self.watch_key}", dict)

    async def find_jobs(self, family: str) -> Sequence[JobStatus]:
        """The active clusters tagged with a key of ``family``, newest first (see the module docstring).

        A cluster that cannot be described any more (it just went away) is skipped; any other error
        fails the look-up, because "no cluster found" would make the core create a second one.
        """
        listed: list[ClusterInfo] = []
        created: dict[str, str] = {}
        async for item in self.paged("list_clusters", "Clusters", "Marker", ClusterStates=list(ACTIVE_CLUSTER_STATES)):
            info = ClusterInfo.parse(item)
            listed.append(info)
            created[info.id] = str(((item.get("Status") or {}).get("Timeline") or {}).get("CreationDateTime") or "")
        known = self._known_keys
        unknown = [info.id for info in listed if info.id not in known]
        semaphore = asyncio.Semaphore(DESCRIBE_CONCURRENCY)

        async def describe(cluster_id: str) -> None:
            async with semaphore:
                try:
                    known[cluster_id] = (await describe_cluster(self, cluster_id)).key
                except JobNotFoundError:
                    known[cluster_id] = None

        await asyncio.gather(*(describe(c) for c in unknown))
        mine = [info for info in listed if in_family(known.get(info.id), family)]
        mine.sort(key=lambda info: created[info.id], reverse=True)
        return [self._status(info, known[info.id]) for info in mine]

    async def status_many(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        """Active clusters in one ``ListClusters`` page or a few; ended ones are asked one by one."""
        wanted = set(job_ids)
        found: dict[str, JobStatus] = {}
        pages = math.ceil(len(wanted) / LIST_PAGE) + 1
        async for item in self.paged("list_clusters", "Clusters", "Marker", max_pages=pages,
                                     ClusterStates=list(ACTIVE_CLUSTER_STATES)):
            if item.get("Id") in wanted:
                found[item["Id"]] = self._status(ClusterInfo.parse(item), self._known_keys.get(item["Id"]))
        return found

    async def cancel(self, job_id: str, *, key: str | None = None) -> None:
        """Terminate the cluster (what the official operator's ``on_kill`` does, too).

        With ``key``, the cluster's key tag is read first and a cluster tagged with another key is
        left alone (logged): a task only ever terminates the cluster it created.
        """
        if key is not None and await status_if_carrying(self, job_id, key, f"cluster {job_id}") is None:
            return
        await self.cancel_with_retries("terminate_job_flows", f"cluster {job_id}", JobFlowIds=[job_id])

    def links(self, job_id: str) -> dict[str, str]:
        return cluster_links(self, job_id)


async def cluster_id_by_name(backend: AwsBackend[Any], name: str, states: Sequence[str]) -> str:
    """The id of the one cluster called ``name`` in one of ``states`` (the official ``job_flow_name``)."""
    params: dict[str, Any] = {"ClusterStates": list(states)} if states else {}
    matches = [
        item.get("Id")
        async for item in backend.paged("list_clusters", "Clusters", "Marker", **params)
        if item.get("Name") == name
    ]
    if len(matches) != 1:
        found = "no cluster" if not matches else f"{len(matches)} clusters ({', '.join(map(str, matches))})"
        raise ConfigurationError(f"job_flow_name {name!r}: found {found} in states {list(states) or 'any'}; "
                                 "exactly one is needed")
    return str(matches[0])
