"""One REST API of one endpoint and identity, as a backend calls it.

Why in core: every REST backend wrote the same few lines — the loop's pooled session for its
endpoint, a base URL, its headers, credentials renewed after a 401 — and then, for the calls that
change something (a submit, a cancel), a bounded retry whose throttling must slow every caller of
the endpoint, not only the one that was throttled. Written here once, a backend's call is one line
and cannot forget the throttle gate. Polls are sent once (``retry=False``): the trigger's loop owns
their back-off, and a 429 must reach the watcher.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Mapping
from typing import Any

from airflow_spark_async.core.http import DEFAULT_OPTIONS, Credentials, HttpOptions, request_json
from airflow_spark_async.core.retry import DEFAULT_BACKOFF, Backoff, retry_call
from airflow_spark_async.core.runtime import Runtime

__all__ = ["RestApi"]


class RestApi:
    """Calls to ``base_url`` with one identity.

    :param identity: the endpoint and a digest of the credentials (``Backend.identity()``): the
        key of the shared throttle gate (``Runtime.current().gate``).
    :param credentials: renewed once after a 401 (:class:`~airflow_spark_async.core.http.Credentials`).
    :param headers: sent with every request (a ``User-Agent``, a CSRF header).
    :param attempts, policy: calls in all and the delays between them for ``retry=True`` calls.
    :param what: names the API in retry log lines (``"Databricks"``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        identity: str,
        credentials: Credentials | None = None,
        headers: Mapping[str, str] | None = None,
        options: HttpOptions = DEFAULT_OPTIONS,
        attempts: int = 1,
        policy: Backoff = DEFAULT_BACKOFF,
        what: str = "",
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.base_url = base_url.rstrip("/")
        self.identity, self.credentials, self.headers = identity, credentials, dict(headers or {})
        self.options, self.attempts, self.policy, self.what = options, attempts, policy, what or self.origin

    async def call(self, method: str, path: str, *, retry: bool = False, **kwargs: Any) -> Any:
        """``request_json`` of ``base_url/path`` (``params``, ``json_body``, ``not_found_ok``, ``text``);
        with ``retry``, transient errors are retried behind the endpoint's throttle gate."""
        send = functools.partial(self.send, method, path, **kwargs)
        if not retry:
            return await send()
        return await retry_call(send, attempts=self.attempts, what=f"{self.what} {method} {path}",
                                policy=self.policy, gate=Runtime.current().gate(self.identity))

    async def send(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request, never retried (but renewed once after a 401)."""
        session = Runtime.current().session(self.origin, self.options)
        return await request_json(session, method, f"{self.base_url}/{path.lstrip('/')}", headers=self.headers,
                                  credentials=self.credentials, **kwargs)
