"""Fixtures of the EMR tests: moto's server driven like AWS (see moto_aws.py), one per session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.emr.moto_aws import MotoAws


@pytest.fixture(scope="session")
def aws() -> Iterator[MotoAws]:
    """moto as EMR behaves: CancelSteps answered, a terminated cluster cancels its steps."""
    with MotoAws() as service:
        yield service


@pytest.fixture(scope="session")
def stock_aws() -> Iterator[MotoAws]:
    """moto as it is: CancelSteps answers 500, GetDashboardForJobRun 404, and a terminated cluster
    leaves its steps as they were."""
    with MotoAws(emulate_missing=False, cancel_steps_on_termination=False) as service:
        yield service


@pytest.fixture
def conn_id(aws: MotoAws) -> Iterator[str]:
    """A fresh ``aws`` connection to the proxy; the proxy's records start empty."""
    aws.proxy.clear()
    with aws.connection(f"emr_{uuid.uuid4().hex[:8]}") as name:
        yield name
    aws.proxy.clear()


@pytest.fixture
def cluster_id(aws: MotoAws) -> str:
    return aws.create_cluster(f"test-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def application_id(aws: MotoAws) -> str:
    return aws.create_application(f"test-{uuid.uuid4().hex[:6]}")
