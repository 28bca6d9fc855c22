"""API calls per poll cycle for 1, 10 and 100 steps of one cluster, measured against moto.

Each step is watched by its own trigger (one task per step, the common shape), all in one event
loop as in one triggerer. Ours share one watcher and one client: a cycle costs ``ceil(N / 10)``
``ListSteps`` calls. The official ``EmrStepSensorTrigger`` is measured alongside for comparison
(one ``DescribeStep`` per step per cycle); it is only installed for comparison, never used.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from airflow_spark_async.core.http import close_loop_sessions
from airflow_spark_async.emr.triggers import EmrStepsTrigger
from tests.emr.moto_aws import MotoAws
from tests.emr.test_steps import _raw_step

#: cycles measured, after the triggers are past their first poll (set-up costs are not counted)
CYCLES = 3


def _measure(aws: MotoAws, step_ids: list[str], make: Callable[[str], Any], operation: str,
             interval: float) -> float:
    """Run one trigger per step; return the ``operation`` calls per cycle once every trigger polls."""
    window: list[float] = []

    async def run() -> None:
        tasks = [asyncio.create_task(anext(make(step_id).run())) for step_id in step_ids]
        # steady state: every trigger has polled once (the official ones each build a client first)
        needed = 1 if operation == "ListSteps" else len(step_ids)
        for _ in range(1200):
            asked = {b.get("StepId") or tuple(b.get("StepIds", ())) for o, b in aws.proxy.bodies if o == operation}
            if len(asked) >= needed:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(interval)
        window.append(asyncio.get_running_loop().time())
        await asyncio.sleep(interval * CYCLES)
        window.append(asyncio.get_running_loop().time())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_loop_sessions()

    aws.proxy.clear()
    asyncio.run(run())
    # asyncio's loop clock is time.monotonic(), like the proxy's timeline
    calls = [t for op, t in aws.proxy.timeline if op == operation and window[0] <= t < window[1]]
    return round(len(calls) / CYCLES, 1)


@pytest.mark.filterwarnings("ignore:coroutine 'AioSession._create_client' was never awaited")
@pytest.mark.parametrize("steps", [1, 10, 100])
def test_api_calls_per_cycle_for_the_steps_of_one_cluster(aws: MotoAws, conn_id: str, steps: int,
                                                          record_property: Callable[[str, Any], None]) -> None:
    cluster_id = aws.create_cluster(f"cost-{uuid.uuid4().hex[:6]}")
    added: list[str] = []
    for start in range(0, steps, 50):
        batch = [_raw_step(f"s{i}", 3600) for i in range(start, min(steps, start + 50))]
        added += aws.client("emr").add_job_flow_steps(JobFlowId=cluster_id, Steps=batch)["StepIds"]

    ours = _measure(aws, added, lambda s: EmrStepsTrigger(
        conn_id=conn_id, job_id=f"{cluster_id}:{s}", policy={"interval": 1.0}), "ListSteps", 1.0)
    assert ours == math.ceil(steps / 10), f"{steps} steps cost {ours} ListSteps per cycle"
    assert all(len(b.get("StepIds", [])) <= 10 for b in aws.proxy.requests_of("ListSteps"))

    from airflow.providers.amazon.aws.triggers.emr import EmrStepSensorTrigger

    official = _measure(aws, added, lambda s: EmrStepSensorTrigger(
        job_flow_id=cluster_id, step_id=s, waiter_delay=1, waiter_max_attempts=100, aws_conn_id=conn_id),
        "DescribeStep", 1.0)
    record_property("api_calls_per_cycle", {"steps": steps, "ours_ListSteps": ours, "official_DescribeStep": official})
    print(f"\n{steps:>4} steps of one cluster: ours {ours:g} ListSteps/cycle, official {official:g} DescribeStep/cycle")
    for step_id in added:
        aws.set_step(aws.step(cluster_id, step_id), "CANCELLED")
