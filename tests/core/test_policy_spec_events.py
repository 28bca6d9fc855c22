"""Pure behaviour of the small core types: validation, back-off, versioned events, keys."""

from __future__ import annotations

import random

import pytest

from airflow_spark_async.core.backend import TERMINAL_STATES, JobState, job_key
from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.retry import PollPolicy
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.core.trigger import EVENT_VERSION, EventStatus, JobEvent


def test_terminal_states_are_exactly_the_three_ends() -> None:
    assert {s for s in JobState if s.is_terminal} == TERMINAL_STATES
    assert TERMINAL_STATES == {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}


def test_backoff_grows_is_jittered_capped_and_honours_retry_after() -> None:
    policy = PollPolicy(backoff_base=2, backoff_max=30)
    rng = random.Random(7)
    delays = [policy.backoff(n, rng=rng) for n in range(1, 9)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(30, 2 * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays}) == len(delays), "jitter must spread retries"
    assert policy.backoff(1, retry_after=17, rng=rng) == 17
    assert policy.backoff(20, rng=rng) <= 30


@pytest.mark.parametrize(
    "bad",
    [{"interval": 0}, {"interval": -5}, {"interval": float("inf")}, {"interval": "10"}, {"error_budget": 0},
     {"backoff_max": 0}, {"nope": 1}],
)
def test_policy_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        PollPolicy.from_dict(bad)


def test_policy_round_trips_through_a_dict() -> None:
    policy = PollPolicy(interval=3.5, error_budget=4)
    assert PollPolicy.from_dict(policy.to_dict()) == policy


def test_event_round_trip_and_versions() -> None:
    event = JobEvent(EventStatus.FAILED, "livy", "7", state="failed", backend_state="dead", message="boom",
                     links={"ui": "http://x"}, deadline=1.5)
    payload = event.to_payload()
    assert payload["v"] == EVENT_VERSION and payload["status"] == "failed"
    assert JobEvent.from_payload(payload) == event
    newer = {**payload, "v": 99, "field_from_the_future": [1, 2]}
    assert JobEvent.from_payload(newer) == event
    garbage = JobEvent.from_payload({"status": "exploded", "job_id": "1"})
    assert garbage.status is EventStatus.ERROR and "unrecognised" in (garbage.message or "")


def test_job_key_is_deterministic_distinct_and_token_safe() -> None:
    key = job_key("dag", "task", "manual__2026", 3)
    assert key == job_key("dag", "task", "manual__2026", 3)
    others = {job_key("dag", "task", "manual__2026", i) for i in (-1, 0, 1, 2)}
    others |= {job_key("dag", "task2", "manual__2026", 3), job_key("dag2", "task", "manual__2026", 3)}
    assert key not in others and len(others) == 6
    assert len(key) <= 64 and key.replace("-", "").isalnum() and key == key.lower()
    # separators cannot be forged by ids that contain them
    assert job_key("a_b", "c", "r") != job_key("a", "b_c", "r")


def test_spark_job_validates_and_round_trips() -> None:
    job = SparkJob("s3://b/app.py", args=["1"], conf={"spark.x": 1}, driver_memory="2g", num_executors=3)  # type: ignore[dict-item]
    assert job.conf == {"spark.x": "1"} and job.is_python
    assert SparkJob.from_dict(job.to_dict()) == job
    assert not SparkJob("app.jar", main_class="org.Main").is_python


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"application": ""}, "application is required"),
        ({"application": "a.py", "args": "--x 1"}, "list of strings"),
        ({"application": "a.py", "driver_memory": "lots"}, "size"),
        ({"application": "a.py", "executor_cores": 0}, "positive integer"),
        ({"application": "a.py", "conf": ["x"]}, "mapping"),
    ],
)
def test_spark_job_rejects_bad_input_with_a_useful_message(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SparkJob(**kwargs)  # type: ignore[arg-type]


def test_spark_job_from_dict_names_unknown_fields() -> None:
    with pytest.raises(ConfigurationError, match="executor_mem"):
        SparkJob.from_dict({"application": "a.py", "executor_mem": "1g"})
