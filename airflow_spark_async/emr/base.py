"""What the three EMR backends share: connection → shared client, options, paging, cancel, logs.

Each backend (steps, clusters, Serverless job runs) is a thin subclass that maps its API's
answers onto :class:`~airflow_spark_async.core.backend.JobStatus`; the AWS mechanics live here
and in :mod:`airflow_spark_async.emr.aws`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_spark_async.core.backend import Backend
from airflow_spark_async.core.errors import (
    ConfigurationError,
    JobNotFoundError,
    RequestRejected,
    ServerError,
    TransientError,
)
from airflow_spark_async.core.policy import PollPolicy
from airflow_spark_async.emr.aws import (
    AWS_OPTIONS,
    AwsClient,
    AwsSettings,
    aws_client,
    console_base,
    validate_aws_options,
)

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["AwsBackend"]

log = logging.getLogger(__name__)

#: attempts of a cancel request that meets a transient error, and the back-off between them —
#: cancelling is the one call whose failure leaves a job running behind a finished task
CANCEL_ATTEMPTS = 3
CANCEL_BACKOFF = PollPolicy(backoff_base=1.0)
CANCEL_MAX_DELAY = 10.0
#: most compressed bytes of a log file read to show its tail (the tail of a gzip stream can
#: only be reached by reading it from the start)
LOG_READ_LIMIT = 16 * 1024 * 1024


class AwsBackend(Backend):
    """A backend on one AWS service, reached through the shared client of its connection."""

    #: the botocore service name
    service: ClassVar[str]
    #: backend options this backend accepts (besides them, none)
    options: ClassVar[frozenset[str]] = AWS_OPTIONS

    def __init__(self, settings: AwsSettings, client: AwsClient, options: Mapping[str, Any]) -> None:
        self.settings = settings
        self.client = client
        self.backend_options = dict(options)

    @classmethod
    async def from_connection(cls, conn: Connection, options: Mapping[str, Any]) -> AwsBackend:
        cls.validate_options(options)
        settings = AwsSettings.from_connection(conn, options)
        return cls(settings, await aws_client(settings, cls.service), options)

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        validate_aws_options(options, cls.options, cls.__name__)

    @property
    def watch_key(self) -> str:
        """The client's identity: every trigger of one (connection, region, endpoint) shares a watcher."""
        return self.settings.client_key(self.service)

    def option(self, name: str) -> Any:
        """A backend option the operation cannot do without."""
        value = self.backend_options.get(name)
        if not value:
            raise ConfigurationError(f"{type(self).__name__}: the backend option {name!r} is required here")
        return value

    @property
    def console(self) -> str:
        return console_base(self.settings)

    @property
    def region(self) -> str:
        return self.settings.region_name or "us-east-1"

    async def call(self, operation: str, **params: Any) -> dict[str, Any]:
        return await self.client.call(operation, **params)

    async def paged(self, operation: str, items: str, token: str, *, max_pages: int | None = None,
                    **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Items of a paged list call; ``token`` names the paging field of request and response."""
        pages = 0
        while True:
            answer = await self.call(operation, **params)
            listed = answer.get(items)
            if not isinstance(listed, list):
                raise ServerError(f"{self.service} {operation} answered without {items!r}")
            for item in listed:
                if isinstance(item, dict):
                    yield item
            pages += 1
            next_token = answer.get(token)
            if not next_token or (max_pages is not None and pages >= max_pages):
                return
            params[token] = next_token

    async def cancel_with_retries(self, operation: str, what: str, **params: Any) -> dict[str, Any] | None:
        """Send a cancel request, retrying transient failures a few times.

        Returns ``None`` when the service says there is nothing to cancel (the job ended, the
        cluster is gone): cancelling must not fail on a job that already finished.
        """
        for attempt in range(1, CANCEL_ATTEMPTS + 1):
            try:
                return await self.call(operation, **params)
            except (RequestRejected, JobNotFoundError) as exc:
                log.info("Nothing to cancel for %s: %s", what, exc)
                return None
            except TransientError as exc:
                if attempt == CANCEL_ATTEMPTS:
                    raise
                # the hint is capped (core.http.MAX_RETRY_AFTER) by the policy, and again here: a
                # cancel runs inside on_kill's budget or a finishing task, never for minutes
                delay = min(CANCEL_BACKOFF.backoff(attempt, retry_after=exc.retry_after), CANCEL_MAX_DELAY)
                log.warning("Cancelling %s failed (%s); trying again in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
        return None  # pragma: no cover

    def s3_console_url(self, uri: str, path: str) -> str:
        """The S3 console page of ``path`` under the folder ``uri`` (``s3://bucket/prefix``)."""
        bucket, _, prefix = uri.split("://", 1)[1].partition("/")
        prefix = f"{prefix.rstrip('/')}/" if prefix else ""
        return f"{self.console}/s3/buckets/{bucket}?region={self.region}&prefix={prefix}{path}"

    async def log_tails(self, folder: str, label: str, tail_lines: int) -> str | None:
        """Tails of ``stdout.gz`` and ``stderr.gz`` in the S3 ``folder``, each under a header."""
        parts = []
        for stream in ("stdout", "stderr"):
            tail = await self.s3_tail(f"{folder}/{stream}.gz", tail_lines)
            if tail:
                parts.append(f"----- {label} {stream} -----\n{tail}")
        return "\n".join(parts) or None

    async def s3_tail(self, uri: str, tail_lines: int) -> str | None:
        """The last lines of a (possibly gzipped) log file on S3, or ``None`` if it is not there."""
        if not uri.startswith("s3://"):
            return None
        bucket, _, key = uri[len("s3://"):].partition("/")
        s3 = await aws_client(self.settings, "s3")
        try:
            answer = await s3.call("get_object", Bucket=bucket, Key=key)
        except (JobNotFoundError, RequestRejected):
            return None
        lines: collections.deque[str] = collections.deque(maxlen=tail_lines)
        inflate = zlib.decompressobj(wbits=47) if key.endswith(".gz") else None  # 47: gzip or zlib header
        pending = ""
        read = 0
        async with answer["Body"] as body:
            while read < LOG_READ_LIMIT and (chunk := await body.read(256 * 1024)):
                read += len(chunk)
                data = inflate.decompress(chunk) if inflate else chunk
                text = pending + data.decode("utf-8", errors="replace")
                *complete, pending = text.split("\n")
                lines.extend(complete)
        if pending:
            lines.append(pending)
        return "\n".join(lines) or None
