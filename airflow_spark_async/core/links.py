"""Moved into :mod:`airflow_spark_async.core.operator`; this path stays so that existing imports keep working."""

from airflow_spark_async.core.operator import JobLink, push_link, push_links, start_links

__all__ = ["JobLink", "push_link", "push_links", "start_links"]
