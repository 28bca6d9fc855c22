"""``LivyBatchOperator``: the official ``LivyOperator``'s arguments (see :mod:`.compat`), a deferrable
core underneath: the batch is watched from the triggerer, a retry reattaches to the batch of an
earlier try, killing the task deletes the batch, and the task log gets the end of the batch log."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from airflow_spark_async.core.errors import BackendError
from airflow_spark_async.livy.backend import LivyBatchRequest
from airflow_spark_async.livy.compat import OfficialOperatorArguments, policy_from_retry_args
from airflow_spark_async.livy.links import LivyBatchLink, LivyDriverLogLink, LivySparkUILink
from airflow_spark_async.livy.triggers import LivyBatchTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["LivyBatchOperator", "policy_from_retry_args"]


class LivyBatchOperator(OfficialOperatorArguments[LivyBatchRequest]):
    """Submit a Spark batch to Apache Livy, free the worker while it runs, succeed or fail with it.

    Takes every argument of the official ``LivyOperator`` with its meaning there (see
    :class:`~airflow_spark_async.livy.compat.OfficialOperatorArguments`), and the core's: ``job`` (a
    :class:`SparkJob` instead of ``file`` …), ``conn_id``, ``poll_interval``, ``poll_policy``,
    ``job_timeout``, ``reattach``, ``log_tail_lines``, ``backend_options``
    (:class:`~airflow_spark_async.livy.backend.LivyOptions`).

    Returns the batch id as an int, as the official operator does, and pushes the XComs ``job_id`` (the
    id as a string, like every operator here) and ``app_id`` (as the official operator does), and the
    links of the Livy batch page, the Spark UI and the driver log.
    """

    trigger_class = LivyBatchTrigger
    link_classes = (LivyBatchLink, LivySparkUILink, LivyDriverLogLink)
    operator_extra_links = (LivyBatchLink(), LivySparkUILink(), LivyDriverLogLink())

    def build_request(self, context: Context, key: str, attempt: int) -> LivyBatchRequest:
        job, queue, proxy_user = self.official_job(context)
        if not job.name:
            job = dataclasses.replace(job, name=f"{context['ti'].dag_id}.{context['ti'].task_id}")
        return LivyBatchRequest(job, queue=queue, proxy_user=proxy_user)

    def result(self, context: Context, job_id: str) -> Any:
        """The batch id, after pushing the official operator's ``app_id`` XCom — once Livy knows it:
        a batch fired and forgotten may have none yet, and Airflow 3.0 fails a task that pushes an
        XCom of None (pulling an XCom never pushed gives None on every minor)."""
        try:
            batch = self.backend_call(lambda backend: backend.batch(job_id))  # type: ignore[attr-defined]
        except BackendError as exc:
            self.log.warning("Could not read the application id of batch %s: %s", job_id, exc)
        else:
            if batch.app_id is not None:
                context["ti"].xcom_push(key="app_id", value=batch.app_id)
        return int(job_id) if job_id.isdigit() else job_id  # Livy's ids are ints: the official return value
