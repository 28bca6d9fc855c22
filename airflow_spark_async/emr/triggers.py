"""Triggers of the EMR backends. Their class paths are stored in Airflow's database: never move
them without leaving an alias behind.

Each is the core's :class:`~airflow_spark_async.core.trigger.SparkJobTrigger` naming its backend;
the region, endpoint options and TLS settings travel in ``backend_options`` (the official
triggers drop the region). Two backend options are read here, because they shape the watch
rather than the API calls:

* ``stop_states`` (clusters) — cluster states that end the watch as a success although the
  cluster lives on, such as ``WAITING`` for "wait until the new cluster is ready" (the trigger's
  ``target_states``; kwargs stored before 0.3 carry them as ``stop_states``, still accepted).
* ``cancel_on_kill`` (Serverless) — ``False`` leaves the job run alone when the task is killed
  (the official operator's argument); a deadline still cancels it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_spark_async.core.trigger import SparkJobTrigger
from airflow_spark_async.emr.clusters import EmrClusterBackend
from airflow_spark_async.emr.serverless import EmrServerlessBackend
from airflow_spark_async.emr.steps import EmrStepsBackend

__all__ = ["EmrClusterTrigger", "EmrServerlessJobTrigger", "EmrStepsTrigger"]


class EmrStepsTrigger(SparkJobTrigger):
    """Watch the steps one task added to an EMR cluster until all of them ended."""

    backend_class = EmrStepsBackend


class EmrClusterTrigger(SparkJobTrigger):
    """Watch an EMR cluster until it ends or reaches one of its ``stop_states``."""

    backend_class = EmrClusterBackend

    def __init__(self, *, target_states: Sequence[str] = (), backend_options: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        options = dict(backend_options or {})
        super().__init__(target_states=(*target_states, *(options.get("stop_states") or ())),
                         backend_options=options, **kwargs)


class EmrServerlessJobTrigger(SparkJobTrigger):
    """Watch an EMR Serverless job run until it ends."""

    backend_class = EmrServerlessBackend

    def __init__(self, *, owns_job: bool = True, backend_options: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        options = dict(backend_options or {})
        super().__init__(owns_job=owns_job and options.get("cancel_on_kill", True) is not False,
                         backend_options=options, **kwargs)
