"""Benchmarks of airflow-spark-async against the official providers (see docs/performance.md).

Not part of the installed package: run from a checkout with ``python -m bench.triggerer_scale``
or ``python -m bench.worker_slots``.
"""
