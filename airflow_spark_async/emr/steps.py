"""Spark steps on EMR clusters: add them, watch them all, cancel them, find them again.

One job is every step one task added (``j-CLUSTER:s-1,s-2``, see :mod:`.ids`). It has
succeeded when every step completed, and ended badly when every step ended and one did not
complete — the first failed step explains why. A task never ends while a step it added still
runs: with ``ActionOnFailure=CONTINUE`` the later steps keep going after a failure, and
leaving them behind a failed task would orphan them.

**Polling is coalesced.** ``ListSteps`` takes up to 10 step ids, and its summaries carry the
whole status (state, reason, ``FailureDetails``), so the statuses of every step of a cluster
that the triggerer watches cost ``ceil(steps / 10)`` calls per cycle — whether the core's
watcher asks through :meth:`EmrStepsBackend.status_many` or, after an error, job by job:
the core's :class:`~airflow_spark_async.core.coalescer.Coalescer` merges concurrent questions
into the same calls.

**A terminated cluster is noticed.** Steps of a cluster that terminated cannot finish. EMR
cancels them, but a poll that only lists steps would wait on a step left in ``RUNNING``
forever, so every ``cluster_check_interval`` seconds (default 300) a cluster with unfinished
watched steps is described once; if it has terminated, its unfinished steps end as
``CLUSTER_TERMINATED`` with the cluster's reason.

**Reattach by name.** ``AddJobFlowSteps`` has no client token, so each step's name carries the
task's key and its place in the submission (``name [asa-… 2/3]``). A retry lists the cluster's
unfinished steps; if one carries the key it rebuilds the whole submission (finished steps
included, newest first) and watches it instead of adding the steps again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow_spark_async.core.backend import JobState, JobStatus, StatusMany
from airflow_spark_async.core.coalescer import Coalescer
from airflow_spark_async.core.errors import (
    BackendError,
    ConfigurationError,
    JobNotFoundError,
    RequestRejected,
    ServerError,
)
from airflow_spark_async.core.retry import clock as core_clock
from airflow_spark_async.core.runtime import Runtime
from airflow_spark_async.core.spec import SparkJob, option
from airflow_spark_async.emr.aws import AwsBackend, AwsOptions
from airflow_spark_async.emr.clusters import cluster_links, describe_cluster
from airflow_spark_async.emr.ids import StepsRef, in_family, parse_tag, strip_tag, tag_name
from airflow_spark_async.emr.spark import spark_step

__all__ = ["STEP_STATES", "EmrStepsBackend", "StepInfo", "StepsRequest"]

log = logging.getLogger(__name__)

STEP_STATES: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "CANCEL_PENDING": JobState.CANCELLING,  # a cancel is under way: never reattached to
    "RUNNING": JobState.RUNNING,
    "COMPLETED": JobState.SUCCEEDED,
    "CANCELLED": JobState.CANCELLED,
    "FAILED": JobState.FAILED,
    "INTERRUPTED": JobState.FAILED,
    "CLUSTER_TERMINATED": JobState.FAILED,  # ours: the step's cluster ended under it
}
ACTIVE_STEP_STATES = ("PENDING", "CANCEL_PENDING", "RUNNING")
#: ListSteps accepts at most this many StepIds
LIST_STEPS_MAX_IDS = 10
#: AddJobFlowSteps / CancelSteps accept at most this many steps
MAX_STEPS = 256
DEFAULT_CLUSTER_CHECK = 300.0


@dataclasses.dataclass(frozen=True)
class StepInfo:
    """One step's summary from ``ListSteps``, parsed at the edge."""

    id: str
    name: str
    state: str
    reason: str | None = None
    failure_reason: str | None = None
    failure_message: str | None = None
    failure_log: str | None = None

    @classmethod
    def parse(cls, data: Any) -> StepInfo:
        if not isinstance(data, Mapping) or not data.get("Id") or not isinstance(data.get("Status"), Mapping):
            raise ServerError(f"EMR answered a step without Id or Status: {str(data)[:200]!r}")
        status = data["Status"]
        failure = status.get("FailureDetails") or {}
        return cls(
            id=str(data["Id"]),
            name=str(data.get("Name") or ""),
            state=str(status.get("State") or "UNKNOWN"),
            reason=(status.get("StateChangeReason") or {}).get("Message") or None,
            failure_reason=failure.get("Reason") or None,
            failure_message=failure.get("Message") or None,
            failure_log=failure.get("LogFile") or None,
        )

    @property
    def job_state(self) -> JobState:
        return STEP_STATES.get(self.state, JobState.PENDING)

    def explain(self) -> str:
        """One line saying what happened to the step, in EMR's own words."""
        parts = [f"step {strip_tag(self.name)!r} ({self.id}) {self.state}"]
        if self.failure_reason or self.failure_message:
            parts.append(": ".join(p for p in (self.failure_reason, self.failure_message) if p))
        if self.reason:
            parts.append(self.reason)
        if self.failure_log:
            parts.append(f"log: {self.failure_log}")
        return "; ".join(parts)


@dataclasses.dataclass(frozen=True)
class StepsRequest:
    """What :class:`~airflow_spark_async.emr.operators.EmrAddStepsOperator` submits.

    :param cluster_id: the cluster (``None``: the backend option ``cluster_id``).
    :param steps: ``AddJobFlowSteps`` StepConfigs, as the official operator takes them.
    :param execution_role_arn: the runtime role of the steps.
    """

    cluster_id: str | None
    steps: tuple[Mapping[str, Any], ...]
    execution_role_arn: str | None = None


@dataclasses.dataclass(frozen=True)
class StepsOptions(AwsOptions):
    """``cluster_id``: where to add steps and look for an earlier try's (set by the operator);
    ``cluster_check_interval``: seconds between liveness checks of a watched cluster."""

    cluster_id: str | None = None
    cluster_check_interval: float = option(DEFAULT_CLUSTER_CHECK, gt=0)


class EmrStepsBackend(AwsBackend[StepsRequest]):
    """Spark (or any) steps on EMR clusters; see the module docstring.

    Backend options: ``region_name``, ``verify``, ``botocore_config`` (AWS), ``cluster_id``
    (where to add steps and look for an earlier try's steps — set by the operator), and
    ``cluster_check_interval`` (seconds between liveness checks of a cluster, default 300).
    """

    name: ClassVar[str] = "emr"
    service: ClassVar[str] = "emr"
    supports_find_by_key: ClassVar[bool] = True
    Options: ClassVar[type[AwsOptions]] = StepsOptions

    @property
    def steps(self) -> Coalescer[tuple[str, str], StepInfo | None]:
        """The shared ``ListSteps`` coalescer of this client: every question about steps asked in one
        loop turn (the watcher's batch, its one-by-one fallback, cancels, logs) costs
        ``ceil(steps / 10)`` calls per cluster. A step the cluster does not list is ``None``."""
        return Runtime.current().shared(f"emr.steps|{self.watch_key}", lambda: Coalescer(
            self._list_steps, max_batch=LIST_STEPS_MAX_IDS, group=lambda key: key[0], missing=lambda key: None,
            name="emr ListSteps"))

    async def step_infos(self, ref: StepsRef) -> dict[str, StepInfo | None]:
        """The summaries of the job's steps; the first error of any of them raises."""
        infos = await self.steps.get_many((ref.cluster_id, step_id) for step_id in ref.step_ids)
        for info in infos.values():
            if isinstance(info, BaseException):
                raise info
        return {step_id: info for (_, step_id), info in infos.items()}  # type: ignore[misc]

    async def _list_steps(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], StepInfo | BaseException]:
        cluster_id = keys[0][0]
        listed = await self._list(cluster_id, [step_id for _, step_id in keys])
        return {(cluster_id, step_id): info for step_id, info in listed.items()}

    async def _list(self, cluster_id: str, step_ids: list[str], *,
                    cluster_known: bool = False) -> dict[str, StepInfo | BaseException]:
        """One ``ListSteps`` of up to ten ids; each id maps to its step, or to the error of that id alone.

        EMR refuses the whole call (``InvalidRequestException``) when one id is not a step of the
        cluster. One unknown id — a typo in a sensor's ``step_id``, a step id of another cluster —
        must not fail the other nine watched steps, so a refused chunk is split in halves and each
        half asked again, down to the ids that are refused on their own: only those are
        ``JobNotFoundError``. A cluster EMR does not know refuses every id, so it is asked about
        once (``DescribeCluster``) before splitting. Transient errors fail the chunk as a whole: they
        apply to every id alike, and the watcher backs off for all of them.
        """
        try:
            answer = await self.call("list_steps", ClusterId=cluster_id, StepIds=step_ids)
        except RequestRejected as exc:  # EMR: InvalidRequestException for a cluster or step it does not know
            if len(step_ids) == 1:
                return {step_ids[0]: JobNotFoundError(
                    f"EMR cannot list step {step_ids[0]} of cluster {cluster_id}: {exc}", status=exc.status)}
            if not cluster_known and not await self._cluster_known(cluster_id):
                error = JobNotFoundError(f"EMR cannot list steps of cluster {cluster_id}: {exc}", status=exc.status)
                return dict.fromkeys(step_ids, error)
            half = len(step_ids) // 2
            left, right = await asyncio.gather(self._list(cluster_id, step_ids[:half], cluster_known=True),
                                               self._list(cluster_id, step_ids[half:], cluster_known=True))
            return {**left, **right}
        listed = answer.get("Steps")
        if not isinstance(listed, list):
            raise ServerError(f"EMR ListSteps of {cluster_id} answered without 'Steps'")
        return {info.id: info for info in map(StepInfo.parse, listed)}

    async def _cluster_known(self, cluster_id: str) -> bool:
        try:
            await describe_cluster(self, cluster_id)
        except JobNotFoundError:
            return False
        return True

    # -- submit and reattach ---------------------------------------------------------------

    async def submit(self, request: StepsRequest | SparkJob, *, key: str, attempt: int = 1) -> JobStatus:
        if isinstance(request, SparkJob):  # the portable job, as the conformance suite submits it
            request = StepsRequest(None, (spark_step(request),))
        cluster_id = request.cluster_id or self.required("cluster_id")
        if not request.steps or len(request.steps) > MAX_STEPS:
            raise ConfigurationError(f"give between 1 and {MAX_STEPS} steps, not {len(request.steps)}")
        cluster = await describe_cluster(self, cluster_id)
        if cluster.ended or cluster.state == "TERMINATING":
            raise RequestRejected(f"cluster {cluster_id} is {cluster.state} ({cluster.reason or 'no reason given'}); "
                                  "steps cannot be added to it")
        total = len(request.steps)
        steps = [
            {**step, "Name": tag_name(str(step.get("Name") or "step"), key, index, total)}
            for index, step in enumerate(request.steps, start=1)
        ]
        params: dict[str, Any] = {"JobFlowId": cluster_id, "Steps": steps}
        if request.execution_role_arn:
            params["ExecutionRoleArn"] = request.execution_role_arn
        answer = await self.call("add_job_flow_steps", **params)
        step_ids = answer.get("StepIds")
        if not isinstance(step_ids, list) or len(step_ids) != total:
            raise ServerError(f"EMR AddJobFlowSteps answered {answer.get('StepIds')!r} for {total} step(s)")
        ref = StepsRef(cluster_id, tuple(step_ids))
        return JobStatus(str(ref), JobState.PENDING, "PENDING", message=f"added {total} step(s) to {cluster_id}",
                         links=self._links(ref, cluster.log_uri))

    async def find_jobs(self, family: str) -> Sequence[JobStatus]:
        """The submissions of ``family`` on the option's cluster that still have an unfinished step,
        newest first, each with its key.

        Two listings: the cluster's unfinished steps (one filtered ``ListSteps``, usually one page)
        say which keys of the family are alive; only then is the history paged, newest first, until
        every step of those submissions is found — finished steps included, since they belong to the
        job. A submission whose steps have all ended is not returned: the core neither reattaches to
        nor cancels a finished job, and paging a long-lived cluster's whole history for it would make
        every submit cost as much as the cluster is old.
        """
        cluster_id = self.required("cluster_id")
        live: dict[str, int] = {}  # key -> number of steps of its submissions
        async for info in self._listed(cluster_id, StepStates=list(ACTIVE_STEP_STATES)):
            tag = parse_tag(info.name)
            if tag and in_family(tag.key, family):
                live[tag.key] = max(live.get(tag.key, 1), tag.total or 1)
        if not live:
            return []
        submissions: list[tuple[str, dict[int, StepInfo]]] = []
        collecting: dict[str, dict[int, StepInfo]] = {}  # key -> the submission being collected
        complete: set[str] = set()  # keys whose live submission is fully collected
        async for info in self._listed(cluster_id):  # newest first
            tag = parse_tag(info.name)
            if not tag or tag.key not in live or tag.total != live[tag.key] or not tag.position:
                continue
            current = collecting.get(tag.key)
            # the steps of one AddJobFlowSteps call are listed together, positions descending: a
            # position already seen, or above the lowest one seen, starts an older submission
            if current is None or tag.position in current or tag.position > min(current):
                current = collecting[tag.key] = {}
                submissions.append((tag.key, current))
            current[tag.position] = info
            if len(current) == live[tag.key] and any(not i.job_state.is_terminal for i in current.values()):
                complete.add(tag.key)
                if complete == set(live):
                    break
        found: list[JobStatus] = []
        for key, steps in submissions:
            if all(info.job_state.is_terminal for info in steps.values()):
                continue
            if len(steps) < live[key]:
                missing = sorted(set(range(1, live[key] + 1)) - set(steps))
                raise JobNotFoundError(f"steps {missing} of the earlier submission of {key} on {cluster_id} are no "
                                       "longer listed; refusing to guess what that try did")
            ref = StepsRef(cluster_id, tuple(steps[i].id for i in range(1, live[key] + 1)))
            found.append(self._aggregate(ref, {i.id: i for i in steps.values()}))
        return found

    async def _listed(self, cluster_id: str, **filters: Any) -> Any:
        async for item in self.paged("list_steps", "Steps", "Marker", ClusterId=cluster_id, **filters):
            yield StepInfo.parse(item)

    # -- watch -------------------------------------------------------------------------------

    async def status(self, job_id: str) -> JobStatus:
        ref = StepsRef.parse(job_id)
        steps = await self._check_cluster(ref.cluster_id, await self.step_infos(ref))
        status = self._aggregate(ref, steps)
        if status.is_terminal and status.state is not JobState.SUCCEEDED:
            status = await self._explain_failure(ref, status)
        return status

    async def status_many(self, job_ids: Sequence[str]) -> StatusMany:
        """Every job's steps through the coalescer, with per-job errors as core's contract has them.

        A job with an unknown step gets its own ``JobNotFoundError`` in the mapping (its trigger
        fails at no further request; the other jobs stand). A job whose steps could not be read
        for another reason (its cluster's list failed) gets that error, so its trigger backs off
        alone — unless no job could be read at all: then the listing failed, and its error raises
        (the watcher backs off every trigger of the batch instead of asking each job again).
        """
        refs = {job_id: StepsRef.parse(job_id) for job_id in job_ids}
        infos = await self.steps.get_many({(r.cluster_id, s) for r in refs.values() for s in r.step_ids})
        by_cluster: dict[str, dict[str, StepInfo | None]] = {}
        for (cluster_id, step_id), info in infos.items():
            if isinstance(info, BaseException) and not isinstance(info, Exception):
                raise info  # a cancellation is not one job's error
            if not isinstance(info, BaseException):
                by_cluster.setdefault(cluster_id, {})[step_id] = info
        for cluster_id, steps in by_cluster.items():
            by_cluster[cluster_id] = await self._check_cluster(cluster_id, steps)
        found: dict[str, JobStatus | Exception] = {}
        for job_id, ref in refs.items():
            failed = [e for s in ref.step_ids if isinstance(e := infos[(ref.cluster_id, s)], Exception)]
            if failed:
                found[job_id] = next((e for e in failed if isinstance(e, JobNotFoundError)), failed[0])
                continue
            try:
                found[job_id] = self._aggregate(ref, by_cluster[ref.cluster_id])
            except JobNotFoundError as exc:
                found[job_id] = exc
        if found and all(isinstance(v, Exception) and not isinstance(v, JobNotFoundError) for v in found.values()):
            raise next(iter(found.values()))  # type: ignore[misc]
        return found

    async def _check_cluster(self, cluster_id: str, steps: dict[str, StepInfo | None]) -> dict[str, StepInfo | None]:
        """Every ``cluster_check_interval``, make sure unfinished steps still have a cluster."""
        if all(info is None or info.job_state.is_terminal for info in steps.values()):
            return steps
        checked: dict[str, float] = Runtime.current().shared(f"emr.cluster_checks|{self.watch_key}", dict)
        now = core_clock.monotonic()
        interval = self.opts.cluster_check_interval  # type: ignore[attr-defined]
        if now - checked.setdefault(cluster_id, now) < interval:
            return steps
        checked[cluster_id] = now
        cluster = await describe_cluster(self, cluster_id)
        if not cluster.ended:
            return steps
        why = f"cluster {cluster_id} is {cluster.state} ({cluster.reason or 'no reason given'})"
        return {
            step_id: info if info is None or info.job_state.is_terminal
            else dataclasses.replace(info, state="CLUSTER_TERMINATED", reason=why)
            for step_id, info in steps.items()
        }

    def _aggregate(self, ref: StepsRef, steps: Mapping[str, StepInfo | None]) -> JobStatus:
        ordered = [steps.get(step_id) for step_id in ref.step_ids]
        missing = [step_id for step_id, info in zip(ref.step_ids, ordered, strict=True) if info is None]
        if missing:
            raise JobNotFoundError(f"EMR does not list step(s) {missing} of cluster {ref.cluster_id}")
        infos: list[StepInfo] = [info for info in ordered if info is not None]
        total = len(infos)
        links = self._links(ref)
        # the key the steps were added with: the first step's name says it (all carry the same one)
        key = next((tag.key for info in infos if (tag := parse_tag(info.name))), None)
        if all(info.state == "COMPLETED" for info in infos):
            message = f"{total} step(s) completed" if total > 1 else None
            return JobStatus(str(ref), JobState.SUCCEEDED, "COMPLETED", message=message, links=links, key=key)
        unfinished = [(n, info) for n, info in enumerate(infos, start=1) if not info.job_state.is_terminal]
        if unfinished:
            # a step being cancelled means the job is being cancelled (CancelSteps takes them all):
            # the job is CANCELLING, never one to reattach to, until every step ended
            cancelling = [(n, info) for n, info in unfinished if info.job_state is JobState.CANCELLING]
            number, current = (cancelling or unfinished)[0]
            if cancelling:
                state = JobState.CANCELLING
            elif any(info.job_state is JobState.RUNNING for _, info in unfinished):
                state = JobState.RUNNING
            else:
                state = JobState.PENDING
            where = f"step {number}/{total} {strip_tag(current.name)!r} is {current.state}" if total > 1 else None
            return JobStatus(str(ref), state, current.state, message=where, links=links, key=key)
        bad = [info for info in infos if info.state != "COMPLETED"]
        culprit = next((info for info in bad if info.job_state is JobState.FAILED), bad[0])
        details = [info.explain() for info in bad]
        return JobStatus(str(ref), culprit.job_state, culprit.state, message=culprit.explain(),
                         diagnostics="\n".join(details) if total > 1 else None, links=links, key=key)

    async def _explain_failure(self, ref: StepsRef, status: JobStatus) -> JobStatus:
        """Add the cluster's side of the story (and its log link) to a failed job."""
        try:
            cluster = await describe_cluster(self, ref.cluster_id)
        except BackendError:
            return status
        links = {**status.links, **self._links(ref, cluster.log_uri)}
        if cluster.ended or cluster.state == "TERMINATING":
            note = f"cluster {ref.cluster_id} is {cluster.state} ({cluster.reason or 'no reason given'})"
            diagnostics = "\n".join(p for p in (status.diagnostics, note) if p)
            return dataclasses.replace(status, diagnostics=diagnostics, links=links)
        return dataclasses.replace(status, links=links)

    # -- cancel, logs, links ---------------------------------------------------------------------

    async def cancel(self, job_id: str, *, key: str | None = None) -> None:
        """``CancelSteps`` with ``SEND_INTERRUPT`` for every step of the job.

        EMR cancels pending steps, and running ones on release 5.28.0 and later; it answers per
        step, asynchronously and without a guarantee, so the watch goes on until the steps end.

        With ``key``, the steps' names are read first and a job whose steps carry another key is
        left alone (logged): an id is only ever cancelled for the task that added the steps.
        """
        ref = StepsRef.parse(job_id)
        if key is not None:
            try:
                carried = {tag.key for info in (await self.step_infos(ref)).values()
                           if info is not None and (tag := parse_tag(info.name))}
            except JobNotFoundError as exc:
                log.info("Nothing to cancel for steps %s: %s", job_id, exc)
                return
            if carried - {key}:
                log.warning("Not cancelling steps %s: they carry the key %s, not %s", job_id,
                            ", ".join(sorted(carried)), key)
                return
        answer = await self.cancel_with_retries(
            "cancel_steps", f"steps {job_id}", ClusterId=ref.cluster_id, StepIds=list(ref.step_ids),
            StepCancellationOption="SEND_INTERRUPT",
        )
        for item in (answer or {}).get("CancelStepsInfoList") or []:
            if isinstance(item, Mapping) and item.get("Status") == "FAILED":
                # e.g. the step already ended: nothing left to stop
                log.info("EMR did not cancel step %s: %s", item.get("StepId"), item.get("Reason"))

    async def logs(self, job_id: str, *, tail_lines: int) -> str | None:
        """Tails of the deciding step's ``stdout``/``stderr`` from the cluster's S3 log URI.

        EMR uploads step logs every few minutes, so right after a step ends they may not be
        there yet; ``FailureDetails`` (in the failure message) is EMR's own excerpt.
        """
        ref = StepsRef.parse(job_id)
        steps = await self.step_infos(ref)
        infos = [info for step_id in ref.step_ids if (info := steps.get(step_id)) is not None]
        if not infos:
            return None
        step = next((info for info in infos if info.state not in ("COMPLETED", "PENDING")), infos[-1])
        if step.failure_log:
            folder = step.failure_log.rsplit("/", 1)[0]
        else:
            cluster = await describe_cluster(self, ref.cluster_id)
            if not cluster.log_uri:
                return None
            folder = f"{cluster.log_uri.rstrip('/')}/{ref.cluster_id}/steps/{step.id}".replace("s3n://", "s3://")
        return await self.log_tails(folder, f"step {step.id}", tail_lines)

    def links(self, job_id: str) -> dict[str, str]:
        return self._links(StepsRef.parse(job_id))

    def _links(self, ref: StepsRef, log_uri: str | None = None) -> dict[str, str]:
        suffix = f"steps/{ref.step_ids[0]}/" if len(ref.step_ids) == 1 else "steps/"
        return cluster_links(self, ref.cluster_id, log_uri, suffix)
