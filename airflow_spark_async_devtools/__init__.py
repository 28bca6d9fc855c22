"""Developer tools of airflow-spark-async that the runtime wheel does not ship.

They live in the source repository (an editable install, ``pip install -e '.[local]'``, or ``./dev``
puts them on the path) because a provider installed into a production Airflow has no business
starting JVMs: :mod:`~airflow_spark_async_devtools.local_cluster` runs a throw-away Spark standalone
cluster on 127.0.0.1 for the tests, the benchmarks and ``./dev demo``.
"""
