"""Deferrable twins of the official EMR sensors: same arguments, no worker slot while waiting.

* ``target_states`` and ``failed_states`` are honoured while deferred — the official deferrable
  sensors wait for a terminal state whatever they were given. Here the trigger stops at the
  first target *or* failed state, so ``target_states=["RUNNING"]`` resumes the task as soon as
  the step runs and ``failed_states=["CANCEL_PENDING"]`` fails it as soon as someone cancels.
* A step or job run that ended in a state that is neither target nor failed fails the sensor
  at once instead of poking until the timeout (it can never change again).
* ``max_attempts`` (official) caps the wait at ``poke_interval * max_attempts`` seconds.
* Sensors only watch: killing the sensor never cancels the step or the run.

Each sensor lives with its backend's operators (``steps_operators``, ``clusters_operators``,
``serverless_operators``); this module is the public import path and re-exports them.
"""

from __future__ import annotations

from airflow_spark_async.emr.clusters_operators import EmrJobFlowSensor
from airflow_spark_async.emr.serverless_operators import SERVERLESS_FAILED_STATES as SERVERLESS_FAILED_STATES
from airflow_spark_async.emr.serverless_operators import EmrServerlessJobSensor
from airflow_spark_async.emr.steps_operators import STEP_FAILED_STATES as STEP_FAILED_STATES
from airflow_spark_async.emr.steps_operators import EmrStepSensor
from airflow_spark_async.emr.tasks import EmrSensor as _EmrSensor  # noqa: F401 (its name before the split)

__all__ = ["EmrJobFlowSensor", "EmrServerlessJobSensor", "EmrStepSensor"]
