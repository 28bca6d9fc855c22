"""The shims of ``core/airflow_versions.py`` against the Airflow installed here (3.0 or 3.3)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from airflow_spark_async.core.airflow_versions import BaseHook
from airflow_spark_async.core.runtime import aload_connection

EXTRA = {"region_name": "eu-west-1", "aws_secret_access_key": "s3cr3t-value", "nested": {"a": [1, 2]}}


class ThreeZeroTriggererComms:
    """What Airflow 3.0's trigger runner installs as ``SUPERVISOR_COMMS``: its ``send`` is
    ``async_to_sync(self.asend)(msg)``, which refuses to run on the event loop's own thread."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, bool]] = []
        self.loop_thread = threading.get_ident()

    async def asend(self, msg: Any) -> None:
        return None

    def send(self, msg: Any) -> None:
        async_to_sync(self.asend)(msg)
        self.sent.append((msg, threading.get_ident() == self.loop_thread))


@pytest.mark.skipif(hasattr(BaseHook, "aget_connection"), reason="Airflow 3.1+ reads connections asynchronously")
async def test_on_airflow_3_0_a_connection_extra_is_read_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow 3.0 masks a connection's extra at every ``extra_dejson`` read through a blocking
    call to the triggerer's supervisor; on the loop's thread that call raises, which failed every
    trigger whose connection has an extra. The read (and the masking) happens in a worker thread."""
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setenv("AIRFLOW_CONN_WITH_EXTRA", json.dumps({"conn_type": "aws", "extra": EXTRA}))
    comms = ThreeZeroTriggererComms()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)

    conn = await aload_connection("with_extra")

    assert conn.conn_type == "aws"
    assert conn.extra_dejson == EXTRA and conn.extra_dejson == EXTRA  # read twice on the loop's thread
    conn.extra_dejson["nested"]["a"].append(3)
    assert conn.extra_dejson == EXTRA, "every read hands out its own copy"
    assert comms.sent and not any(on_loop for _, on_loop in comms.sent), "the secrets were masked off the loop"
