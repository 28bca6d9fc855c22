"""Conformance harness for the walkthrough backend of docs/architecture.md, run from the page itself.

The page says a reader can add a fifth backend from it. This module holds it to that: it takes the
code blocks of the page that start with a file name (``# airflow_spark_async/acme/backend.py``),
installs them as the package ``airflow_spark_async.acme`` (a directory appended to the package's
``__path__`` for this session, nothing written into the source tree), and runs the whole
conformance suite — operators and sensors — against them, on the Acme API test server behind a
fault proxy. A page that goes stale (a renamed hook, a moved import) fails here.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import airflow_spark_async
from tests.conformance.harness import Harness, operator_factory, sensor_factory
from tests.conftest import APPS
from tests.servers.acme_server import AcmeServer
from tests.servers.fault_proxy import FaultProxy

PAGE = Path(__file__).resolve().parents[3] / "docs" / "architecture.md"
#: a fenced Python block whose first line names the file it is
BLOCK = re.compile(r"```python\n# (airflow_spark_async/acme/[\w/]+\.py)\n(.*?)```", re.S)
FILES = {"backend.py", "triggers.py", "operators.py", "sensors.py"}


def install_walkthrough(root: Path) -> None:
    """Write the page's blocks under ``root`` and make them importable as ``airflow_spark_async.acme``."""
    blocks = BLOCK.findall(PAGE.read_text())
    named = {Path(path).name for path, _ in blocks}
    assert FILES <= named, f"docs/architecture.md lost the walkthrough blocks {sorted(FILES - named)}"
    package = root / "airflow_spark_async" / "acme"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Acme Spark: the walkthrough backend of docs/architecture.md."""\n')
    for path, code in blocks:
        (root / path).write_text(code)
    airflow_spark_async.__path__.append(str(root / "airflow_spark_async"))


def uninstall_walkthrough(root: Path) -> None:
    airflow_spark_async.__path__.remove(str(root / "airflow_spark_async"))
    for name in [m for m in sys.modules if m.split(".")[:2] == ["airflow_spark_async", "acme"]]:
        del sys.modules[name]


@pytest.fixture(scope="session")
def acme_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("walkthrough")
    install_walkthrough(root)
    operators = importlib.import_module("airflow_spark_async.acme.operators")
    sensors = importlib.import_module("airflow_spark_async.acme.sensors")
    conn_id = "conformance_acme"
    with AcmeServer(token="acme-token") as acme, FaultProxy(acme.origin) as proxy:
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
            {"conn_type": "acme", "host": "127.0.0.1", "port": proxy.port, "schema": "http", "password": "acme-token"}
        )
        yield Harness(
            name="acme",
            make_operator=operator_factory(operators.AcmeSubmitOperator, f"file://{APPS}/sleep_then_exit.py",
                                           conn_id=conn_id),
            proxies=[proxy],
            submit_path=r"/v1/jobs$",
            cancel_path=r"/v1/jobs/\d+/cancel$",
            remote_state=acme.state,
            cancelled_states={"CANCELLING", "CANCELLED"},
            failure_text="the application exited with code 3",
            conn_id=conn_id,
            reattach_by="backend",
            make_sensor=sensor_factory(sensors.AcmeJobSensor, lambda job_id: {"job_id": job_id}, conn_id=conn_id),
            driver_log=False,  # Acme serves no driver log
        )
        del os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"]
    uninstall_walkthrough(root)
