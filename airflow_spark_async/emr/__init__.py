"""Amazon EMR backends: Spark steps on EMR clusters, the clusters themselves, EMR Serverless job runs.

Import the operators from :mod:`airflow_spark_async.emr.operators` and the sensors from
:mod:`airflow_spark_async.emr.sensors`; their names and arguments are the official amazon
provider's, so migrating a DAG is a change of imports (see docs/emr.md). Needs the ``emr``
extra (aiobotocore).
"""
