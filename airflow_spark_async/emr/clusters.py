"""EMR clusters as jobs: create one (``RunJobFlow``), watch its state, terminate it.

Why clusters are a backend too: "create a cluster and wait until it is ready", "wait until it
terminated" and "terminate it when the task is killed" are the same submit / watch / cancel
cycle as a Spark job, so the core's deadline, back-off, restart and kill handling serve them
unchanged. ``RunJobFlow`` has no client token and ``ListClusters`` shows no tags, so a retry
finds the cluster of an earlier try through the core's key ledger (``supports_find_by_key`` is
false); the key is still put on the cluster as a tag, for people.

How cluster states map: ``STARTING``/``BOOTSTRAPPING`` are pending, ``RUNNING``/``WAITING``/
``TERMINATING`` running, ``TERMINATED_WITH_ERRORS`` failed, and ``TERMINATED`` succeeded only
when the reason is ``ALL_STEPS_COMPLETED`` (the cluster did its work and shut down) — else it
was terminated by someone (cancelled). Watches that end earlier, at ``WAITING`` for instance,
use the trigger's ``stop_states``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow_spark_async.core.backend import JobStatus
from airflow_spark_async.core.errors import ConfigurationError, JobNotFoundError, RequestRejected, ServerError
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.core.states import JobState
from airflow_spark_async.emr.aws import AWS_OPTIONS
from airflow_spark_async.emr.base import AwsBackend

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
    "TERMINATING": JobState.RUNNING,
    "TERMINATED": JobState.CANCELLED,  # unless ALL_STEPS_COMPLETED, see ClusterInfo.job_state
    "TERMINATED_WITH_ERRORS": JobState.FAILED,
}
ACTIVE_CLUSTER_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING", "TERMINATING")
ENDED_CLUSTER_STATES = ("TERMINATED", "TERMINATED_WITH_ERRORS")
#: the tag that records which task instance created a cluster
KEY_TAG = "airflow-spark-async:key"
#: ListClusters pages hold 50 clusters
LIST_PAGE = 50


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


async def describe_cluster(backend: AwsBackend, cluster_id: str) -> ClusterInfo:
    """``DescribeCluster``; an id EMR does not know raises ``JobNotFoundError``."""
    try:
        answer = await backend.call("describe_cluster", ClusterId=cluster_id)
    except RequestRejected as exc:  # EMR: InvalidRequestException "Cluster id 'j-…' is not valid."
        raise JobNotFoundError(f"EMR does not know cluster {cluster_id}: {exc}", status=exc.status) from exc
    return ClusterInfo.parse(answer.get("Cluster"))


def cluster_links(backend: AwsBackend, cluster_id: str, log_uri: str | None = None,
                  log_suffix: str = "") -> dict[str, str]:
    """Console pages of a cluster, and of its logs on S3 when the cluster has a log URI."""
    links = {"emr_cluster": f"{backend.console}/emr/home?region={backend.region}#/clusterDetails/{cluster_id}"}
    if log_uri and log_uri.startswith(("s3://", "s3n://")):
        links["emr_logs"] = backend.s3_console_url(log_uri, f"{cluster_id}/{log_suffix}")
    return links


@dataclasses.dataclass(frozen=True)
class JobFlowRequest:
    """What :class:`~airflow_spark_async.emr.operators.EmrCreateJobFlowOperator` submits:
    the ``RunJobFlow`` arguments (the EMR connection's extra, overridden by the task's)."""

    config: Mapping[str, Any]


class EmrClusterBackend(AwsBackend):
    """EMR clusters: create (``RunJobFlow``), watch (``DescribeCluster``), cancel = terminate."""

    name: ClassVar[str] = "emr_cluster"
    service: ClassVar[str] = "emr"
    supports_find_by_key: ClassVar[bool] = False
    #: ``stop_states`` is read by the trigger (the cluster states that end a watch early)
    options: ClassVar[frozenset[str]] = AWS_OPTIONS | {"stop_states"}

    async def submit(self, job: SparkJob | JobFlowRequest, *, key: str) -> JobStatus:  # type: ignore[override]
        if not isinstance(job, JobFlowRequest):
            raise RequestRejected("the EMR cluster backend creates clusters: give a JobFlowRequest, not a SparkJob")
        config = dict(job.config)
        tags = [t for t in config.get("Tags") or [] if isinstance(t, Mapping) and t.get("Key") != KEY_TAG]
        config["Tags"] = [*tags, {"Key": KEY_TAG, "Value": key}]
        answer = await self.call("run_job_flow", **config)
        cluster_id = answer.get("JobFlowId")
        if not cluster_id:
            raise ServerError(f"EMR RunJobFlow answered without a JobFlowId: {answer!r}")
        return JobStatus(cluster_id, JobState.PENDING, "STARTING", message=f"created cluster {config.get('Name')!r}",
                         links=cluster_links(self, cluster_id, config.get("LogUri")))

    async def status(self, job_id: str) -> JobStatus:
        return self._status(await describe_cluster(self, job_id))

    def _status(self, info: ClusterInfo) -> JobStatus:
        return JobStatus(
            info.id,
            info.job_state,
            info.state,
            message=info.reason,
            diagnostics="\n".join(info.errors) or None,
            links=cluster_links(self, info.id, info.log_uri),
        )

    async def status_many(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        """Active clusters in one ``ListClusters`` page or a few; ended ones are asked one by one."""
        wanted = set(job_ids)
        found: dict[str, JobStatus] = {}
        pages = math.ceil(len(wanted) / LIST_PAGE) + 1
        async for item in self.paged("list_clusters", "Clusters", "Marker", max_pages=pages,
                                     ClusterStates=list(ACTIVE_CLUSTER_STATES)):
            if item.get("Id") in wanted:
                found[item["Id"]] = self._status(ClusterInfo.parse(item))
        return found

    async def cancel(self, job_id: str) -> None:
        """Terminate the cluster (what the official operator's ``on_kill`` does, too)."""
        await self.cancel_with_retries("terminate_job_flows", f"cluster {job_id}", JobFlowIds=[job_id])

    def links(self, job_id: str) -> dict[str, str]:
        return cluster_links(self, job_id)


async def cluster_id_by_name(backend: AwsBackend, name: str, states: Sequence[str]) -> str:
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
