"""Moved into :mod:`airflow_spark_async.core.retry` (its :data:`clock`); this path stays so that
existing imports keep working."""

from airflow_spark_async.core.retry import clock, set_clock

now = clock.now
monotonic = clock.monotonic
sleep_until = clock.sleep_until

__all__ = ["monotonic", "now", "set_clock", "sleep_until"]
