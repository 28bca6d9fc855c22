"""Extra links whose URL the operator computed when it submitted the job.

Airflow 3 resolves an operator link from the XCom ``_link_<ClassName>`` the task pushed,
so each backend's link class only names itself and the key of ``JobStatus.links`` it shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["JobLink", "push_links"]


class JobLink(BaseOperatorLink):
    """A link to a page about the job; subclasses set ``name`` and ``link_key``."""

    name: ClassVar[str] = "Spark job"  # type: ignore[misc]
    #: the key in the job's links mapping that holds this link's URL
    link_key: ClassVar[str] = ""

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key=self.xcom_key, ti_key=ti_key) or ""


def push_links(context: Any, links_cls: tuple[type[JobLink], ...], urls: dict[str, str]) -> None:
    """Push the URL of every link class whose ``link_key`` is in ``urls``."""
    ti = context["ti"]
    for cls in links_cls:
        url = urls.get(cls.link_key)
        if url:
            ti.xcom_push(key=cls().xcom_key, value=url)
