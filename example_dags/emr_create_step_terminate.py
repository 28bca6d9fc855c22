"""Create an EMR cluster, wait until it is ready, run a Spark step, wait for it, terminate the cluster.

The pattern of the amazon provider's own EMR example, with this package's deferrable operators and
sensors: no task holds a worker slot while AWS works, and ``remove_cluster`` runs once everything
before it is done, however it ended — a failed step, or a failed wait, never leaves a cluster
running. It is a *teardown* of ``create_cluster`` (trigger rule "all done", once the cluster was
created), so the run still fails when the step failed; a plain ``trigger_rule="all_done"`` would
make the run look successful whenever the cleanup succeeded.
The step is a portable ``SparkJob`` (SparkPi from the examples jar every EMR release ships), turned
into ``spark-submit`` through ``command-runner.jar``; raw ``steps=[...]`` work as well.

Needs an Airflow ``aws`` connection ``aws_default`` (see docs/emr.md) and the default EMR roles
(``aws emr create-default-roles``). The end-to-end tests run this DAG against moto's server.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_spark_async import SparkJob
from airflow_spark_async.emr.operators import (
    EmrAddStepsOperator,
    EmrCreateJobFlowOperator,
    EmrTerminateJobFlowOperator,
)
from airflow_spark_async.emr.sensors import EmrJobFlowSensor, EmrStepSensor

JOB_FLOW_OVERRIDES = {
    "Name": "airflow-spark-async-example",
    "ReleaseLabel": "emr-7.5.0",
    "Applications": [{"Name": "Spark"}],
    "LogUri": "{{ params.log_uri }}",
    "Instances": {
        "InstanceGroups": [
            {"Name": "Primary", "Market": "ON_DEMAND", "InstanceRole": "MASTER", "InstanceType": "m5.xlarge",
             "InstanceCount": 1},
            {"Name": "Core", "Market": "ON_DEMAND", "InstanceRole": "CORE", "InstanceType": "m5.xlarge",
             "InstanceCount": 2},
        ],
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    },
    # a cluster nobody terminates still stops after an hour of idling
    "AutoTerminationPolicy": {"IdleTimeout": 3600},
    "JobFlowRole": "EMR_EC2_DefaultRole",
    "ServiceRole": "EMR_DefaultRole",
}

SPARK_PI = SparkJob(
    application="file:///usr/lib/spark/examples/jars/spark-examples.jar",
    main_class="org.apache.spark.examples.SparkPi",
    args=["{{ params.slices }}"],
    executor_memory="2g",
)

with DAG(
    dag_id="emr_create_step_terminate",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"slices": 100, "log_uri": "s3://my-emr-logs/airflow-spark-async/"},
    tags=["airflow-spark-async", "emr", "example"],
) as dag:
    create_cluster = EmrCreateJobFlowOperator(task_id="create_cluster", job_flow_overrides=JOB_FLOW_OVERRIDES)
    wait_for_cluster = EmrJobFlowSensor(
        task_id="wait_for_cluster", job_flow_id=create_cluster.output, target_states=["WAITING", "RUNNING"],
        poke_interval=30, timeout=timedelta(minutes=30).total_seconds(),
    )
    # adds the step and returns its id at once (the official default); the sensor waits, deferred
    add_step = EmrAddStepsOperator(task_id="add_step", job_flow_id=create_cluster.output, job=SPARK_PI)
    wait_for_step = EmrStepSensor(
        task_id="wait_for_step",
        job_flow_id=create_cluster.output,
        step_id="{{ task_instance.xcom_pull(task_ids='add_step')[0] }}",
        poke_interval=30,
        timeout=timedelta(hours=2).total_seconds(),
    )
    remove_cluster = EmrTerminateJobFlowOperator(
        task_id="remove_cluster", job_flow_id=create_cluster.output, deferrable=True, waiter_delay=30,
    )
    create_cluster >> wait_for_cluster >> add_step >> wait_for_step >> remove_cluster.as_teardown(setups=create_cluster)
