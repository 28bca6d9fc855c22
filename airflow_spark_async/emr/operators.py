"""Deferrable EMR operators: core-style ones, and twins of the official amazon provider's.

Two families share one implementation:

* :class:`EmrStepsOperator` and :class:`EmrServerlessJobOperator` behave like every operator of
  this package — they always wait for the job (``deferrable`` chooses triggerer or worker) and
  return the job id — and take a portable :class:`SparkJob` or the raw AWS request.
* :class:`EmrAddStepsOperator`, :class:`EmrServerlessStartJobOperator`,
  :class:`EmrCreateJobFlowOperator` and :class:`EmrTerminateJobFlowOperator` take the official
  operators' arguments, wait when they would, and return what they return, so a DAG written for
  ``airflow.providers.amazon.aws.operators.emr`` runs with only its imports changed (docs/emr.md
  lists the few differences).

What changes underneath, for both:

* **The worker is free while AWS works** (``deferrable=True``): the core's trigger watches from
  the triggerer, coalescing the polls of every step of a cluster into ``ListSteps`` calls.
* **Nothing is submitted twice.** A retry finds the steps / job run / cluster of its earlier try
  (by the key in the step or run name, or the key tag of a cluster) and watches it.
* **Nothing is left running.** Killing, marking failed, clearing or timing out the task cancels
  what it started: ``CancelSteps`` (``SEND_INTERRUPT``) for steps, ``CancelJobRun`` for
  Serverless, ``TerminateJobFlows`` for a cluster it created.
* **Failure explains itself**: the step's ``FailureDetails`` or the run's ``stateDetails``, the
  cluster's state-change reason, and the log tail from S3 when it is there.

For the twins, ``waiter_delay`` is the poll interval, and ``waiter_delay * waiter_max_attempts``,
when given, the deadline after which the job is cancelled (the official triggers give up at that
point but leave the job running).

Each backend's operators live in the module named after it (``steps_operators``,
``clusters_operators``, ``serverless_operators``; the shared AWS arguments in ``tasks``). This
module is the public import path, and stays one: every name it exported before is re-exported.
"""

from __future__ import annotations

from airflow_spark_async.emr.clusters_operators import EmrCreateJobFlowOperator, EmrTerminateJobFlowOperator
from airflow_spark_async.emr.compat import AwsArgs, WaitPolicy
from airflow_spark_async.emr.serverless_operators import EmrServerlessJobOperator, EmrServerlessStartJobOperator
from airflow_spark_async.emr.steps_operators import EmrAddStepsOperator, EmrStepsOperator
from airflow_spark_async.emr.tasks import AWS_ARGS as AWS_ARGS
from airflow_spark_async.emr.tasks import EmrJobOperator as _EmrJobOperator  # noqa: F401 (its name before the split)

__all__ = [
    "AwsArgs",
    "EmrAddStepsOperator",
    "EmrCreateJobFlowOperator",
    "EmrServerlessJobOperator",
    "EmrServerlessStartJobOperator",
    "EmrStepsOperator",
    "EmrTerminateJobFlowOperator",
    "WaitPolicy",
]
