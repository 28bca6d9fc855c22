"""The AWS layer the three EMR backends share: settings, shared clients, error translation, and
the backend base with paging, cancelling and S3 log tails.

Why a module of its own: the backends (steps on EC2 clusters, the clusters themselves,
Serverless job runs) talk to AWS the same way, and the official provider's smells start exactly
here — a hook per service that reads credentials, builds clients, retries and maps errors, each
slightly differently. Here each of those is done once:

* :class:`AwsSettings` — an Airflow ``aws`` connection parsed once (the field names are the
  amazon provider's, so an existing connection works unchanged) plus the operator's
  ``region_name`` / ``verify`` / ``botocore_config`` overrides (:class:`AwsOptions`).
* :func:`aws_client` — one aiobotocore client per (connection, region, endpoint, service) and
  event loop, shared by every trigger of the triggerer, behind one core
  :class:`~airflow_spark_async.core.retry.ThrottleGate`. The session is built and the service
  models are parsed in a worker thread, so the event loop never waits on disk.
* :func:`translate_error` — botocore and transport errors become the core's error tree here
  and nowhere else.
* :class:`AwsBackend` — what every EMR backend does alike: build itself from a connection,
  page a list call, cancel with bounded retries, read a log tail from S3, console URLs.

botocore's own retries are switched off: a retried ``AddJobFlowSteps`` could add the steps
twice (the API has no client token), and a retry hidden inside botocore would hide the
throttling that the gate must see. The core's poll loop and ``retry_call`` own retries.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import re
import threading
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

# Imported with the module (the triggerer imports trigger classes before running them), not on
# first use: importing aiobotocore takes most of a second, which must not stall the event loop.
import aiohttp
from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from aiobotocore.credentials import AioDeferredRefreshableCredentials  # type: ignore[import-untyped]
from aiobotocore.session import AioSession  # type: ignore[import-untyped]
from botocore import exceptions as bx  # type: ignore[import-untyped]
from botocore.loaders import create_loader  # type: ignore[import-untyped]

from airflow_spark_async.core.backend import Backend, RequestT, credential_digest
from airflow_spark_async.core.errors import (
    AuthError,
    BackendError,
    ConfigurationError,
    ConnectionFailed,
    JobNotFoundError,
    RateLimitedError,
    RequestRejected,
    ServerError,
)
from airflow_spark_async.core.http import parse_retry_after
from airflow_spark_async.core.paging import Page, pages
from airflow_spark_async.core.retry import Backoff, ThrottleGate, retry_call
from airflow_spark_async.core.runtime import Runtime, aload_connection
from airflow_spark_async.core.spec import BackendOptions
from airflow_spark_async.emr.compat import connection_fields

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = [
    "AwsBackend",
    "AwsClient",
    "AwsOptions",
    "AwsSettings",
    "CredentialsExpired",
    "aws_client",
    "console_base",
    "loop_client",
    "translate_error",
]

log = logging.getLogger(__name__)

#: error codes botocore's standard retry mode treats as throttling (botocore/retries/standard.py)
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
SERVER_CODES = frozenset(
    {
        "InternalServerError",  # EMR models it with HTTP 400, yet it is the service's fault
        "InternalServerException",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired"})
AUTH_CODES = EXPIRED_CODES | {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "InvalidAccessKeyId",
    "AccessDenied",
    "AccessDeniedException",
    "AuthFailure",
    "NotAuthorized",
    "UnauthorizedOperation",
}
NOT_FOUND_CODES = frozenset({"ResourceNotFoundException", "NoSuchKey", "NotFound", "NotFoundException"})

#: how long a replaced client (after a credential change) stays open for calls still in flight
RETIRE_AFTER = 60.0
#: calls of a cancel request that meets transient errors, and the delays between them — cancelling
#: is the one call whose failure leaves a job running behind a finished task; it runs inside
#: on_kill's budget or a finishing task, so no delay is long, whatever the server hints
CANCEL_ATTEMPTS = 3
CANCEL_BACKOFF = Backoff(base=1.0, max_delay=10.0)
#: most compressed bytes of a log file read to show its tail (the tail of a gzip stream can
#: only be reached by reading it from the start)
LOG_READ_LIMIT = 16 * 1024 * 1024


class CredentialsExpired(AuthError):
    """AWS refused the request because its temporary credentials expired.

    A subclass of ``AuthError`` (the core fails on it) that :meth:`AwsClient.call` catches
    first: it reloads the connection — rotated keys, a fresh role session — and retries the
    request once. Only when fresh credentials are refused too does the error reach the core.
    """


def _clean(message: str) -> str:
    """An error message fit for a log line: HTML stripped (proxies, stub servers), length capped."""
    if message.lstrip().startswith("<"):
        message = re.sub(r"<[^>]+>", " ", message)
    return " ".join(message.split())[:300]


def translate_error(exc: BaseException, what: str) -> BackendError | ConfigurationError:
    """The core error for a botocore / transport failure of ``what`` (``"emr ListSteps"``).

    The only place that knows botocore's exception types and AWS error codes.
    """
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error") or {}
        meta = exc.response.get("ResponseMetadata") or {}
        code = str(error.get("Code") or "")
        status = meta.get("HTTPStatusCode")
        retry_after = parse_retry_after((meta.get("HTTPHeaders") or {}).get("retry-after"))
        called = getattr(exc, "operation_name", None)
        where = what if not called or called in what else f"{what} ({called})"
        text = f"{where} failed: {code or status}: {_clean(str(error.get('Message') or ''))}".rstrip(": ")
        if code in THROTTLING_CODES or status == 429:
            return RateLimitedError(text, status=status, retry_after=retry_after)
        if code in EXPIRED_CODES:
            return CredentialsExpired(text, status=status)
        if code in AUTH_CODES or status in (401, 403):
            return AuthError(text, status=status)
        if code in SERVER_CODES or (isinstance(status, int) and status >= 500):
            return ServerError(text, status=status, retry_after=retry_after)
        if code in NOT_FOUND_CODES or status == 404:
            return JobNotFoundError(text, status=status)
        return RequestRejected(text, status=status)
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError)):
        return AuthError(f"{what}: no usable AWS credentials ({exc})")
    if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError, asyncio.TimeoutError, OSError)):
        return ConnectionFailed(f"{what} failed: {type(exc).__name__}: {exc}")
    if isinstance(exc, bx.ResponseParserError):
        return ServerError(f"{what} answered with a body that is not what the API documents: {_clean(str(exc))}")
    if isinstance(exc, (bx.ParamValidationError, bx.ValidationError)):
        return RequestRejected(f"{what}: invalid request: {exc}")
    if isinstance(exc, (bx.NoRegionError, bx.ProfileNotFound, bx.UnknownEndpointError, bx.InvalidRegionError)):
        return ConfigurationError(f"{what}: {exc}")
    if isinstance(exc, aiohttp.ClientError):
        return ConnectionFailed(f"{what} failed: {type(exc).__name__}: {exc}")
    return ServerError(f"{what} failed unexpectedly: {type(exc).__name__}: {_clean(str(exc))}")


@dataclasses.dataclass(frozen=True)
class AwsOptions(BackendOptions):
    """The backend options every AWS backend accepts: the operator's ``region_name``, ``verify`` and
    ``botocore_config``, forwarded into the trigger (the official triggers drop the region)."""

    what: ClassVar[str] = "EMR backend options"
    region_name: str | None = None
    verify: bool | str | None = None
    botocore_config: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.verify is not None and not isinstance(self.verify, (bool, str)):
            raise ConfigurationError(f"{self.what}: verify must be a bool or the path of a CA bundle, "
                                     f"got {self.verify!r}")


@dataclasses.dataclass(frozen=True)
class AwsSettings:
    """An Airflow ``aws`` connection, parsed once (:func:`~.compat.connection_fields` reads the amazon
    provider's field names); secrets are excluded from ``repr``. An empty connection means the
    default credential chain (environment, instance or task role).
    """

    conn_id: str
    region_name: str | None = None
    endpoint_url: str | None = None
    service_config: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    verify: bool | str | None = None
    botocore_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    profile_name: str | None = None
    role_arn: str | None = None
    assume_role_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    access_key: str | None = dataclasses.field(default=None, repr=False)
    secret_key: str | None = dataclasses.field(default=None, repr=False)
    session_token: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_connection(cls, conn: Connection, options: Mapping[str, Any] | None = None) -> AwsSettings:
        """Parse ``conn`` (the amazon provider's connection format: :func:`~.compat.connection_fields`);
        ``options`` (backend options) override region, verify and botocore config."""
        return cls(**connection_fields(conn, options or {}))

    def endpoint_for(self, service: str) -> str | None:
        """The endpoint of ``service``: ``service_config.<service>.endpoint_url``, else ``endpoint_url``."""
        return (self.service_config.get(service) or {}).get("endpoint_url") or self.endpoint_url

    def client_key(self, service: str) -> str:
        """What makes two clients interchangeable: connection, region, endpoint, TLS and botocore config."""
        return json.dumps(
            [self.conn_id, service, self.region_name, self.endpoint_for(service), self.verify, self.botocore_config],
            sort_keys=True,
            default=str,
        )

    @property
    def fingerprint(self) -> str:
        """A digest of everything that decides the credentials, to notice a rotation (never logged)."""
        return credential_digest(self.access_key, self.secret_key, self.session_token, self.role_arn,
                                 self.assume_role_kwargs, self.profile_name)

    @property
    def partition(self) -> str:
        region = self.region_name or ""
        if region.startswith("cn-"):
            return "aws-cn"
        if region.startswith("us-gov-"):
            return "aws-us-gov"
        return "aws"


def console_base(settings: AwsSettings) -> str:
    """The AWS console's address in the connection's partition."""
    domain = {"aws-cn": "amazonaws.cn", "aws-us-gov": "amazonaws-us-gov.com"}.get(settings.partition, "aws.amazon.com")
    return f"https://console.{domain}"


_LOADER_LOCK = threading.Lock()
_LOADER: Any = None


def _shared_loader() -> Any:
    """botocore's model loader, shared by every session so each service model is parsed once."""
    global _LOADER
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = create_loader()
        return _LOADER


def _new_session(settings: AwsSettings, service: str) -> Any:
    """A botocore session with the profile's config read and ``service``'s models parsed — meant to
    run in a thread, since all of it is file I/O and JSON parsing."""
    session = AioSession(profile=settings.profile_name)
    loader = _shared_loader()
    session.register_component("data_loader", loader)
    session.get_scoped_config()  # reads ~/.aws/config (and fails on an unknown profile)
    # What client creation would otherwise load on the event loop (aiobotocore >= 3.7 can do this
    # itself with AioConfig(warm_up_loader_caches=True); the extra allows older releases too).
    for name in ("_retry", "endpoints", "partitions", "sdk-default-configuration"):
        loader.load_data(name)
    for kind in ("service-2", "endpoint-rule-set-1"):
        loader.load_service_model(service, kind)
    return session


class AwsClient:
    """One aiobotocore client of one service, shared by every backend of an event loop that uses
    the same connection, region and endpoint — with its throttle gate.

    The client behind it is replaced (and the old one closed a little later) when the
    connection's credentials change, either because a rebuilt backend read rotated keys or
    because AWS said the current ones expired.
    """

    def __init__(self, settings: AwsSettings, service: str) -> None:
        self.settings = settings
        self.service = service
        # core's gate of this client's identity: one per loop, like the client itself
        self.gate: ThrottleGate = Runtime.current().gate(f"aws|{settings.client_key(service)}")
        self.calls: Counter[str] = Counter()  # observable cost, for tests and benchmarks
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock = asyncio.Lock()
        self._retired: list[contextlib.AsyncExitStack] = []
        self.closed = False

    async def call(self, operation: str, *, deadline: float | None = None, **params: Any) -> dict[str, Any]:
        """Call ``operation`` (the botocore method name, ``list_steps``) and return its answer.

        One call through the client's gate: a throttling answer closes the gate for every caller,
        and ``deadline`` (epoch seconds) bounds the wait at a closed gate. Credentials that AWS
        says expired are reloaded from the connection and the call is sent once more. Raises the
        core's errors (see :func:`translate_error`); ``CancelledError`` passes through.
        """
        what = f"{self.service} {operation}"

        async def send() -> dict[str, Any]:
            client = await self._ensure()
            self.calls[operation] += 1
            try:
                answer: dict[str, Any] = await getattr(client, operation)(**params)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise translate_error(exc, what) from exc
            return answer

        try:
            return await retry_call(send, attempts=1, what=what, deadline=deadline, gate=self.gate)
        except CredentialsExpired:
            log.warning("The credentials of connection %r expired; reloading them and retrying %s once",
                        self.settings.conn_id, operation)
            await self.reload()
            return await retry_call(send, attempts=1, what=what, deadline=deadline, gate=self.gate)

    async def update(self, settings: AwsSettings) -> None:
        """Adopt freshly read settings; a credential change replaces the client."""
        if settings.fingerprint != self.settings.fingerprint:
            log.info("The credentials of connection %r changed; replacing its %s client", settings.conn_id,
                     self.service)
            async with self._lock:
                self.settings = settings
                self._retire()
        else:
            self.settings = settings

    async def reload(self) -> None:
        """Read the connection again (keys may have been rotated; a role is assumed afresh)."""
        options = {"region_name": self.settings.region_name, "verify": self.settings.verify,
                   "botocore_config": self.settings.botocore_config}
        fresh = AwsSettings.from_connection(await aload_connection(self.settings.conn_id), options)
        async with self._lock:
            self.settings = fresh
            self._retire()

    def _retire(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._client = self._stack, None, None
            self._retired.append(stack)
            asyncio.get_running_loop().call_later(RETIRE_AFTER, self._close_retired, stack)

    def _close_retired(self, stack: contextlib.AsyncExitStack) -> None:
        if stack in self._retired:
            self._retired.remove(stack)
            asyncio.get_running_loop().create_task(stack.aclose())

    async def _ensure(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                self._stack, self._client = await _open(self.settings, self.service)
            return self._client

    async def close(self) -> None:
        self.closed = True
        stacks = [*self._retired, *([self._stack] if self._stack else [])]
        self._retired, self._stack, self._client = [], None, None
        for stack in stacks:
            with contextlib.suppress(Exception):
                await stack.aclose()


async def _open(settings: AwsSettings, service: str) -> tuple[contextlib.AsyncExitStack, Any]:
    """Build the aiobotocore client of ``service``; blocking set-up runs in a thread."""
    config_args = dict(settings.botocore_config)
    if config_args.pop("retries", None) is not None:
        log.warning("botocore_config.retries of connection %r is ignored: airflow-spark-async retries itself",
                    settings.conn_id)
    config_args.setdefault("connect_timeout", 10)
    config_args.setdefault("read_timeout", 30)
    config = AioConfig(**{**config_args, "retries": {"total_max_attempts": 1, "mode": "standard"}})
    session = await asyncio.to_thread(_new_session, settings, service)
    kwargs: dict[str, Any] = {
        "region_name": settings.region_name,
        "endpoint_url": settings.endpoint_for(service),
        "config": config,
    }
    if settings.verify is not None:
        kwargs["verify"] = settings.verify
    if settings.role_arn:
        base = await asyncio.to_thread(_new_session, settings, "sts")
        session._credentials = _assumed_role_credentials(settings, base, config)  # the documented botocore seam
    elif settings.access_key:
        kwargs.update(aws_access_key_id=settings.access_key, aws_secret_access_key=settings.secret_key,
                      aws_session_token=settings.session_token)
    stack = contextlib.AsyncExitStack()
    try:
        client = await stack.enter_async_context(session.create_client(service, **kwargs))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        await stack.aclose()
        raise translate_error(exc, f"creating the {service} client of connection {settings.conn_id!r}") from exc
    return stack, client


def _assumed_role_credentials(settings: AwsSettings, base_session: Any, config: Any) -> Any:
    """Credentials of ``settings.role_arn`` that refresh themselves before they expire.

    The role is assumed with the connection's own keys (or the default chain) through STS, at
    the connection's STS endpoint; aiobotocore calls the refresher again ahead of expiry.
    """
    params = {"RoleArn": settings.role_arn, "RoleSessionName": "airflow-spark-async", **settings.assume_role_kwargs}
    keys: dict[str, Any] = {}
    if settings.access_key:
        keys = {"aws_access_key_id": settings.access_key, "aws_secret_access_key": settings.secret_key,
                "aws_session_token": settings.session_token}

    async def refresh() -> dict[str, Any]:
        async with base_session.create_client("sts", region_name=settings.region_name, config=config,
                                              endpoint_url=settings.endpoint_for("sts"), **keys) as sts:
            answer = await sts.assume_role(**params)
        creds = answer["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    return AioDeferredRefreshableCredentials(refresh_using=refresh, method="sts-assume-role")


class _LoopClients(dict[str, AwsClient]):
    """The clients of one event loop, closed with its :class:`Runtime` (aiobotocore clients hold
    aiohttp sessions of their own)."""

    async def close(self) -> None:
        clients = list(self.values())
        self.clear()
        for client in clients:
            await client.close()


def loop_client(settings: AwsSettings, service: str) -> AwsClient:
    """The shared client of ``service`` for these settings on the running loop (made on first use)."""
    clients = Runtime.current().shared("airflow_spark_async.emr.aws clients", _LoopClients)
    key = settings.client_key(service)
    client = clients.get(key)
    if client is None or client.closed:
        client = clients[key] = AwsClient(settings, service)
    return client


async def aws_client(settings: AwsSettings, service: str) -> AwsClient:
    """:func:`loop_client`, after adopting freshly read ``settings`` (a credential change replaces
    the client behind it)."""
    client = loop_client(settings, service)
    await client.update(settings)
    return client


class AwsBackend(Backend[RequestT]):
    """A backend on one AWS service, reached through the shared client of its connection.

    Subclasses name their botocore ``service`` and their :attr:`Options` (a subclass of
    :class:`AwsOptions`); the parsed options are :attr:`opts`.
    """

    #: the botocore service name
    service: ClassVar[str]
    #: the backend options this backend accepts (besides them, none)
    Options: ClassVar[type[AwsOptions]] = AwsOptions

    def __init__(self, settings: AwsSettings, options: Mapping[str, Any]) -> None:
        self.settings = settings
        self.backend_options = dict(options)
        self.opts = self.Options.from_options(options)

    @classmethod
    async def from_connection(cls, conn: Connection, options: Mapping[str, Any]) -> AwsBackend[RequestT]:
        cls.validate_options(options)
        settings = AwsSettings.from_connection(conn, options)
        await aws_client(settings, cls.service)  # rotated credentials replace the loop's client now
        return cls(settings, options)

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        cls.Options.from_options(options)

    @property
    def client(self) -> AwsClient:
        """The running loop's shared client: backends live per process, clients per loop (aiobotocore
        clients hold aiohttp sessions, which belong to the loop that made them)."""
        return loop_client(self.settings, self.service)

    @property
    def watch_key(self) -> str:
        """The client's identity: every trigger of one (connection, region, endpoint) shares a watcher."""
        return self.settings.client_key(self.service)

    def required(self, name: str) -> Any:
        """An option the operation cannot do without (the operators set them)."""
        value = getattr(self.opts, name)
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
        """Items of a paged list call, through core's :func:`~airflow_spark_async.core.paging.pages`
        (its page budget); ``token`` names the paging field of request and response."""

        async def fetch(cursor: str | None) -> Page[dict[str, Any], str]:
            answer = await self.call(operation, **params, **({token: cursor} if cursor else {}))
            listed = answer.get(items)
            if not isinstance(listed, list):
                raise ServerError(f"{self.service} {operation} answered without {items!r}")
            return Page([item for item in listed if isinstance(item, dict)], answer.get(token) or None)

        async for page in pages(fetch, max_pages=max_pages):
            for item in page.items:
                yield item

    async def cancel_with_retries(self, operation: str, what: str, **params: Any) -> dict[str, Any] | None:
        """Send a cancel request, retrying transient failures a few times (bounded delays).

        Returns ``None`` when the service says there is nothing to cancel (the job ended, the
        cluster is gone): cancelling must not fail on a job that already finished.
        """
        try:
            return await retry_call(lambda: self.call(operation, **params), attempts=CANCEL_ATTEMPTS,
                                    what=f"cancelling {what}", policy=CANCEL_BACKOFF)
        except (RequestRejected, JobNotFoundError) as exc:
            log.info("Nothing to cancel for %s: %s", what, exc)
            return None

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
        s3 = loop_client(self.settings, "s3")
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
