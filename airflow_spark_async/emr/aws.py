"""The AWS plumbing of the EMR backends: settings, shared clients, throttling, error translation.

Why a module of its own: both EMR backends (steps on EC2 clusters, Serverless job runs) talk
to AWS the same way, and the official provider's smells start exactly here — a hook per service
that reads credentials, builds clients, retries and maps errors, each slightly differently.
Here each of those is done once:

* :class:`AwsSettings` — an Airflow ``aws`` connection parsed once (the field names are the
  amazon provider's, so an existing connection works unchanged) plus the operator's
  ``region_name`` / ``verify`` / ``botocore_config`` overrides.
* :func:`aws_client` — one aiobotocore client per (connection, region, endpoint, service) and
  event loop, shared by every trigger of the triggerer. The session is built and the service
  models are parsed in a worker thread, so the event loop never waits on disk.
* :class:`ThrottleGate` — when AWS answers ``ThrottlingException`` (or HTTP 429), every caller
  of that client slows down, with jitter, so a thousand triggers do not retry in lock-step.
* :func:`translate_error` — botocore and transport errors become the core's error tree here
  and nowhere else.

botocore's own retries are switched off: a retried ``AddJobFlowSteps`` could add the steps
twice (the API has no client token), and a retry hidden inside botocore would hide the
throttling that :class:`ThrottleGate` must see. The core's poll loop owns retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import random
import re
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

# Imported with the module (the triggerer imports trigger classes before running them), not on
# first use: importing aiobotocore takes most of a second, which must not stall the event loop.
import aiohttp
from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from aiobotocore.credentials import AioDeferredRefreshableCredentials  # type: ignore[import-untyped]
from aiobotocore.session import AioSession  # type: ignore[import-untyped]
from botocore import exceptions as bx  # type: ignore[import-untyped]
from botocore.loaders import create_loader  # type: ignore[import-untyped]

from airflow_spark_async.core import clock as core_clock
from airflow_spark_async.core.connections import aload_connection
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
from airflow_spark_async.core.http import MAX_RETRY_AFTER, cap_retry_after, close_with_loop, parse_retry_after
from airflow_spark_async.core.policy import PollPolicy

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = [
    "AwsClient",
    "AwsSettings",
    "CredentialsExpired",
    "ThrottleGate",
    "aws_client",
    "console_base",
    "translate_error",
    "validate_aws_options",
]

log = logging.getLogger(__name__)

#: backend options every AWS backend accepts: the operator's ``region_name``, ``verify`` and
#: ``botocore_config``, forwarded into the trigger (the official triggers drop the region).
AWS_OPTIONS = frozenset({"region_name", "verify", "botocore_config"})

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
#: the longest a call waits at a closed :class:`ThrottleGate`; a longer closure fails the call as
#: rate limited, so the waiting happens where the trigger's deadline is known (the core's loop)
GATE_MAX_WAIT = 10.0


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


def validate_aws_options(options: Mapping[str, Any], allowed: frozenset[str], owner: str) -> None:
    """Reject unknown backend options and badly typed AWS ones, naming what is accepted."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigurationError(f"{owner}: unknown backend option(s) {unknown}; known: {sorted(allowed)}")
    region = options.get("region_name")
    if region is not None and (not isinstance(region, str) or not region.strip()):
        raise ConfigurationError(f"{owner}: region_name must be a non-empty string, got {region!r}")
    config = options.get("botocore_config")
    if config is not None and not isinstance(config, Mapping):
        raise ConfigurationError(f"{owner}: botocore_config must be a dict of botocore Config arguments")
    verify = options.get("verify")
    if verify is not None and not isinstance(verify, (bool, str)):
        raise ConfigurationError(f"{owner}: verify must be a bool or the path of a CA bundle, got {verify!r}")


@dataclasses.dataclass(frozen=True)
class AwsSettings:
    """An Airflow ``aws`` connection, parsed once; secrets are excluded from ``repr``.

    Read from the connection (the amazon provider's field names): login / password (access key
    id / secret), extra ``aws_session_token``, ``region_name``, ``endpoint_url``,
    ``service_config`` (``{"emr": {"endpoint_url": ...}}``), ``role_arn`` with
    ``assume_role_kwargs`` (``assume_role_method`` must be ``assume_role``), ``profile_name``,
    ``verify``, ``botocore_config`` / ``config_kwargs``. An empty connection means the default
    credential chain (environment, instance or task role).
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
        """Parse ``conn``; ``options`` (backend options) override region, verify and botocore config."""
        options = options or {}
        extra: dict[str, Any] = dict(conn.extra_dejson or {})
        method = extra.get("assume_role_method")
        if method not in (None, "", "assume_role"):
            raise ConfigurationError(
                f"connection {conn.conn_id!r}: assume_role_method={method!r} is not supported by airflow-spark-async; "
                "use 'assume_role' (role_arn + assume_role_kwargs) or give the keys of a principal directly"
            )
        service_config = extra.get("service_config") or {}
        if not isinstance(service_config, Mapping):
            raise ConfigurationError(f"connection {conn.conn_id!r}: service_config must be a JSON object")
        config = options.get("botocore_config") or extra.get("botocore_config") or extra.get("config_kwargs") or {}
        if not isinstance(config, Mapping):
            raise ConfigurationError(f"connection {conn.conn_id!r}: botocore_config must be a JSON object")
        assume_kwargs = extra.get("assume_role_kwargs") or {}
        if not isinstance(assume_kwargs, Mapping):
            raise ConfigurationError(f"connection {conn.conn_id!r}: assume_role_kwargs must be a JSON object")
        access_key = conn.login or extra.get("aws_access_key_id") or None
        secret_key = conn.password or extra.get("aws_secret_access_key") or None
        if bool(access_key) != bool(secret_key):
            raise ConfigurationError(
                f"connection {conn.conn_id!r}: give both the access key id (login) and the secret access key "
                "(password), or neither to use the default credential chain"
            )
        verify = options.get("verify", extra.get("verify"))
        return cls(
            conn_id=conn.conn_id,
            region_name=options.get("region_name") or extra.get("region_name") or None,
            endpoint_url=extra.get("endpoint_url") or None,
            service_config={str(k): dict(v) for k, v in service_config.items() if isinstance(v, Mapping)},
            verify=verify if verify not in ("", None) else None,
            botocore_config=dict(config),
            profile_name=extra.get("profile_name") or None,
            role_arn=extra.get("role_arn") or None,
            assume_role_kwargs=dict(assume_kwargs),
            access_key=access_key,
            secret_key=secret_key,
            session_token=extra.get("aws_session_token") or None,
        )

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
        raw = json.dumps(
            [self.access_key, self.secret_key, self.session_token, self.role_arn, self.assume_role_kwargs,
             self.profile_name],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(raw.encode()).hexdigest()

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


class ThrottleGate:
    """Slows every caller of one client down after AWS throttled one of them.

    Each throttling answer pushes the gate's opening further out — exponential in the number
    of consecutive throttles, "equal jitter" (half fixed, half random), never shorter than a
    ``Retry-After`` — and each waiter adds its own random share when the gate opens, so the
    callers held back together do not come back together. A successful call lowers the
    strike count again.

    **Bounded waits.** A throttle hint is validated and capped like every ``Retry-After``
    (:func:`~airflow_spark_async.core.http.cap_retry_after`: at most ``MAX_RETRY_AFTER``, never
    ``inf``/``nan``/negative), and the gate never holds a caller for long: a caller waits at most
    ``max_wait`` seconds (and never past its own ``budget``); when the gate stays closed longer,
    the call fails at once with :class:`RateLimitedError` carrying the time left as
    ``retry_after``. The long wait then happens in the core's poll loop, which sleeps bounded by
    the trigger's deadline and counts it against the error budget — so one throttled client can
    never hold a trigger past its deadline, the way a hidden sleep inside the gate could.
    """

    def __init__(self, *, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None,
                 clock: Callable[[], float] | None = None, max_wait: float = GATE_MAX_WAIT) -> None:
        #: the core's back-off rule, applied to the count of consecutive throttles
        self.policy = PollPolicy(backoff_base=base, backoff_max=cap)
        self.rng = rng or random.Random()
        self.clock: Callable[[], float] = clock or core_clock.monotonic
        self.max_wait = max_wait
        self.strikes = 0
        self.not_before = 0.0
        self._spread = 0.0
        self.throttles = 0  # observable, for tests and benchmarks

    def delay(self) -> float:
        """Seconds until this caller may go: the gate's opening plus a random share of its spread."""
        wait = self.not_before - self.clock()
        return 0.0 if wait <= 0 else wait + self.rng.uniform(0, self._spread)

    async def wait(self, *, budget: float | None = None) -> None:
        """Wait for the gate to open, for at most ``max_wait`` (and ``budget``) seconds in all.

        Raises :class:`RateLimitedError` — before sleeping — when the gate would open later than that.
        """
        limit = self.max_wait if budget is None else max(0.0, min(self.max_wait, budget))
        until = self.clock() + limit
        # a deadline that further throttles may push out, not an event: hence sleep-and-recheck
        while (pause := self.delay()) > 0:
            if self.clock() + pause > until:
                raise RateLimitedError(
                    f"AWS is throttling this client; the gate opens in {pause:.1f}s, later than this call may wait",
                    retry_after=cap_retry_after(pause),
                )
            await asyncio.sleep(pause)

    def throttled(self, retry_after: float | None = None) -> float:
        """Record a throttling answer; returns how long the gate is now closed."""
        self.throttles += 1
        self.strikes += 1
        pause = self.policy.backoff(self.strikes, retry_after=cap_retry_after(retry_after), rng=self.rng)
        pause = min(pause, MAX_RETRY_AFTER)
        self.not_before = max(self.not_before, self.clock() + pause)
        self._spread = pause / 2
        return pause

    def succeeded(self) -> None:
        self.strikes = max(0, self.strikes - 1)


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
    the same connection, region and endpoint — with its :class:`ThrottleGate`.

    The client behind it is replaced (and the old one closed a little later) when the
    connection's credentials change, either because a rebuilt backend read rotated keys or
    because AWS said the current ones expired.
    """

    def __init__(self, settings: AwsSettings, service: str) -> None:
        self.settings = settings
        self.service = service
        self.gate = ThrottleGate()
        self.calls: Counter[str] = Counter()  # observable cost, for tests and benchmarks
        #: state a backend keeps per shared client (the steps backend's batcher), living as long as it
        self.shared: dict[str, Any] = {}
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock = asyncio.Lock()
        self._retired: list[contextlib.AsyncExitStack] = []
        self.closed = False

    async def call(self, operation: str, *, deadline: float | None = None, **params: Any) -> dict[str, Any]:
        """Call ``operation`` (the botocore method name, ``list_steps``) and return its answer.

        ``deadline`` (epoch seconds) bounds the wait at a closed throttle gate, besides the gate's
        own ``max_wait``. Raises the core's errors (see :func:`translate_error`); ``CancelledError``
        passes through.
        """
        for attempt in (1, 2):
            await self.gate.wait(budget=None if deadline is None else deadline - core_clock.now())
            client = await self._ensure()
            self.calls[operation] += 1
            try:
                answer: dict[str, Any] = await getattr(client, operation)(**params)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = translate_error(exc, f"{self.service} {operation}")
                cause: BaseException = exc
            else:
                self.gate.succeeded()
                return answer
            if isinstance(error, RateLimitedError):
                pause = self.gate.throttled(error.retry_after)
                log.warning("AWS throttled %s %s; every caller of this client waits %.1fs", self.service, operation,
                            pause)
            if isinstance(error, CredentialsExpired) and attempt == 1:
                log.warning("The credentials of connection %r expired; reloading them and retrying %s once",
                            self.settings.conn_id, operation)
                await self.reload()
                continue
            raise error from cause
        raise AssertionError("unreachable")  # pragma: no cover

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
    """The clients of one event loop; closed with the loop's HTTP sessions (see below)."""

    closed = False

    async def close(self) -> None:
        self.closed = True
        for client in list(self.values()):
            await client.close()
        self.clear()


_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients] = weakref.WeakKeyDictionary()
_CLEANUP_KEY = "airflow_spark_async.emr.aws clients"


def _loop_clients() -> _LoopClients:
    loop = asyncio.get_running_loop()
    clients = _CLIENTS.get(loop)
    if clients is None or clients.closed:
        clients = _CLIENTS[loop] = _LoopClients()
        # aiobotocore clients hold aiohttp sessions too: close them when the core closes the loop's.
        close_with_loop(_CLEANUP_KEY, clients)
    return clients


async def aws_client(settings: AwsSettings, service: str) -> AwsClient:
    """The shared client of ``service`` for these settings on the running loop."""
    clients = _loop_clients()
    key = settings.client_key(service)
    client = clients.get(key)
    if client is None or client.closed:
        client = clients[key] = AwsClient(settings, service)
    else:
        await client.update(settings)
    return client
