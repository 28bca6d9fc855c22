"""How a trigger polls: interval, back-off, error budget — validated once, carried in kwargs.

Why a policy object instead of loose arguments: the operator, the sensor and the trigger
all need the same rules, and the trigger must be rebuilt from JSON after a triggerer
restart. One frozen dataclass with ``to_dict``/``from_dict`` keeps the three in step.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from typing import Any

from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.fields import from_known_fields
from airflow_spark_async.core.retry import backoff

__all__ = ["PollPolicy"]


@dataclasses.dataclass(frozen=True)
class PollPolicy:
    """Polling rules for one job.

    :param interval: seconds between polls while the job runs (> 0).
    :param backoff_base: first delay after a transient error, doubled each further error.
    :param backoff_max: the longest delay between two attempts after errors.
    :param error_budget: consecutive transient errors tolerated before the trigger hands the
        question back to the worker, which re-checks the job and defers again if it still runs.
    :param heartbeat: seconds between "still running, elapsed …" lines in the task log.
    """

    interval: float = 10.0
    backoff_base: float = 2.0
    backoff_max: float = 120.0
    error_budget: int = 20
    heartbeat: float = 300.0

    def __post_init__(self) -> None:
        for field in ("interval", "backoff_base", "backoff_max", "heartbeat"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigurationError(f"poll policy: {field} must be a number of seconds > 0, got {value!r}")
        if isinstance(self.error_budget, bool) or not isinstance(self.error_budget, int) or self.error_budget < 1:
            raise ConfigurationError(f"poll policy: error_budget must be an integer >= 1, got {self.error_budget!r}")

    def backoff(self, errors: int, *, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Delay before the next attempt after ``errors`` consecutive failures.

        The package's one back-off rule, :func:`airflow_spark_async.core.retry.backoff`: "equal
        jitter" (half the exponential delay fixed, half random, so thousands of triggers that
        failed together do not come back together), and a server's ``Retry-After`` as a floor,
        validated and capped first (see ``core.http.MAX_RETRY_AFTER``).
        """
        return backoff(errors, base=self.backoff_base, cap=self.backoff_max, retry_after=retry_after, rng=rng)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PollPolicy:
        return from_known_fields(cls, data, "poll policy")
