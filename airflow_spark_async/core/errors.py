"""The exception tree, drawn once, and translated from transport errors in one place.

::

    SparkAsyncError
    ├── ConfigurationError        bad input, raised before anything is submitted
    └── BackendError              the remote API answered badly or not at all
        ├── TransientError        worth retrying: the poll loop backs off and tries again
        │   ├── RateLimitedError  HTTP 429 / throttling; carries ``retry_after`` seconds
        │   ├── ServerError       HTTP 5xx, or a 200 whose body is not what the API documents
        │   └── ConnectionFailed  reset, refused, DNS, timeout
        └── PermanentError        retrying cannot help
            ├── AuthError         HTTP 401 / 403
            ├── JobNotFoundError  the backend no longer knows the job (e.g. Livy restarted)
            └── RequestRejected   HTTP 4xx on a request we built: a bug or bad job spec

Why a tree rather than one exception with a status code in its message: the poll loop
decides "retry or fail" with one ``except TransientError``, and users can catch
``ConfigurationError`` in tests of their DAGs without parsing text.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BackendError",
    "ConfigurationError",
    "ConnectionFailed",
    "JobNotFoundError",
    "PermanentError",
    "RateLimitedError",
    "RequestRejected",
    "ServerError",
    "SparkAsyncError",
    "TransientError",
]


class SparkAsyncError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigurationError(SparkAsyncError, ValueError):
    """The DAG asked for something that cannot work; the message says what to fix."""


class BackendError(SparkAsyncError):
    """The remote API failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientError(BackendError):
    """A failure that may go away on its own; ``retry_after`` is the server's hint, if any."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class RateLimitedError(TransientError):
    """HTTP 429 or a throttling error code."""


class ServerError(TransientError):
    """HTTP 5xx or a malformed response body."""


class ConnectionFailed(TransientError):
    """The request never got an answer: reset, refused, timed out."""


class PermanentError(BackendError):
    """Retrying the same request cannot succeed."""


class AuthError(PermanentError):
    """Credentials were refused (HTTP 401/403)."""


class JobNotFoundError(PermanentError):
    """The backend does not know the job id (any more)."""


class RequestRejected(PermanentError):
    """HTTP 4xx for a request we built: the job spec or an option is wrong."""
