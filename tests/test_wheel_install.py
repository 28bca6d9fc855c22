"""The package as a user installs it: ``python -m build`` makes an sdist and a wheel that pass
``twine check``; the wheel, installed with ONE extra into a fresh virtualenv, brings only what that
backend needs, imports without another backend's dependencies, and runs the Livy example DAG with
``dag.test()`` against the Livy test server; and installing it where Airflow 3.0 is already
installed leaves Airflow alone.

Every virtualenv is made by uv and filled from the project's ``constraints.txt`` (the pins ``./dev
setup`` installed, so uv's cache makes each install take seconds) — never from the source tree:
the subprocesses run from a temporary directory, with ``airflow_spark_async`` asserted to come from
the virtualenv's site-packages. Needs the package index through uv for anything not yet in uv's
cache (the Airflow 3.0 check fetches 3.0's metadata the first time). See docs/releasing.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.livy_server import LivyServer

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
VERSION = "0.1.0"

#: The distributions each way of installing must NOT bring (the other backends' SDKs); a backend's
#: own dependency is asserted present. "" is the bare package: the Spark standalone backend.
BACKENDS: dict[str, tuple[str, set[str], set[str]]] = {
    # extra: (backend package, must be installed, must be absent)
    "": ("standalone", set(), {"pyspark", "aiobotocore", "botocore", "boto3", "databricks-sdk"}),
    "livy": ("livy", set(), {"pyspark", "aiobotocore", "botocore", "boto3", "databricks-sdk"}),
    "emr": ("emr", {"aiobotocore", "botocore", "boto3"}, {"pyspark", "databricks-sdk"}),
    "databricks": ("databricks", {"databricks-sdk"}, {"pyspark", "aiobotocore", "botocore", "boto3"}),
}
#: Import names of those distributions: none may be imported by another backend's modules.
IMPORT_NAMES = {"pyspark": "pyspark", "aiobotocore": "aiobotocore", "botocore": "botocore", "boto3": "boto3",
                "databricks-sdk": "databricks"}
#: No runtime install brings the developer tooling or the official providers (the ``compare`` extra).
NEVER = {"pytest", "pytest-asyncio", "pytest-timeout", "moto", "ruff", "mypy", "build", "twine", "matplotlib",
         "psycopg2-binary", "asyncpg", "apache-airflow-providers-apache-livy", "apache-airflow-providers-amazon",
         "apache-airflow-providers-databricks"}
#: What no file of the wheel may be, and no path of the sdist may go through.
NOT_IN_WHEEL = ("airflow_spark_async_devtools", "tests", "bench", "scripts", "example_dags", "docs")
LOCAL_ONLY = re.compile(r"(^|/)(\.venv[^/]*|\.cluster|\.demo|dist|build|__pycache__|\.pytest_cache|\.ruff_cache|"
                        r"\.mypy_cache|[^/]*\.egg-info)(/|$)|\.pyc$")


def run(argv: list[str], *, timeout: float = 300, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def uv(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """uv as ``./dev setup`` installed it (the pip package ``uv`` in the project's virtualenv)."""
    return run([sys.executable, "-m", "uv", *args], timeout=timeout)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess in a fresh virtualenv: nothing of this test process's Airflow,
    Python path or virtualenv."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV", "SPARK", "PYSPARK", "UV_"))}
    return {**env, **extra}


def new_venv(path: Path) -> Path:
    uv("venv", "--quiet", "--python", sys.executable, str(path))
    return path / "bin" / "python"


def distributions(python: Path) -> dict[str, str]:
    listed = uv("pip", "list", "--python", str(python), "--format", "json")
    return {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(listed.stdout)}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``python -m build`` from the source tree: the sdist, and the wheel built from that sdist."""
    import importlib.util

    for tool in ("build", "twine", "uv"):
        assert importlib.util.find_spec(tool), f"{tool} is missing from the dev virtualenv: run ./dev setup"
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--installer", "uv", "--outdir", str(out), str(ROOT)])
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="module")
def installed(dist: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """``installed(extra)``: the python of a fresh virtualenv holding the built wheel with that one
    extra ("" for none), pinned by constraints.txt; made once per module."""
    made: dict[str, Path] = {}

    def make(extra: str) -> Path:
        if extra not in made:
            python = new_venv(tmp_path_factory.mktemp(f"venv-{extra or 'bare'}"))
            requirement = f"{dist['wheel']}[{extra}]" if extra else str(dist["wheel"])
            uv("pip", "install", "--quiet", "--python", str(python), "-c", str(CONSTRAINTS), requirement)
            made[extra] = python
        return made[extra]

    yield make


# -- the distributions ---------------------------------------------------------------------------


def test_the_sdist_and_the_wheel_pass_twine_check(dist: dict[str, Path]) -> None:
    checked = run([sys.executable, "-m", "twine", "check", "--strict", str(dist["sdist"]), str(dist["wheel"])])
    assert checked.stdout.count("PASSED") == 2, checked.stdout
    assert dist["wheel"].name == f"airflow_spark_async-{VERSION}-py3-none-any.whl"
    assert dist["sdist"].name == f"airflow_spark_async-{VERSION}.tar.gz"


def test_the_wheel_holds_the_runtime_package_only(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = wheel.namelist()
        info = f"airflow_spark_async-{VERSION}.dist-info"
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert {name.split("/")[0] for name in names} == {"airflow_spark_async", info}
    assert not [n for n in names if n.split("/")[0] in NOT_IN_WHEEL or "/tests/" in n or LOCAL_ONLY.search(n)]
    assert not [n for n in names if re.search(r"(^|/)(test_[^/]*|conftest)\.py$", n)]
    assert "airflow_spark_async/py.typed" in names
    assert "airflow_spark_async/standalone/local_cluster.py" in names  # the shim that says where the tool went
    assert not [n for n in names if n.startswith("airflow_spark_async/standalone/local_cluster/")]

    assert f"\nVersion: {VERSION}\n" in metadata
    assert "provider_info = airflow_spark_async:get_provider_info" in entry_points
    for classifier in ("Framework :: Apache Airflow :: Provider", "Development Status :: 3 - Alpha",
                       "Programming Language :: Python :: 3.10", "Programming Language :: Python :: 3.13"):
        assert f"Classifier: {classifier}\n" in metadata
    for url in ("Homepage", "Documentation", "Source", "Changelog", "Issues"):
        assert f"Project-URL: {url}, https://" in metadata
    # The unconditional requirements: Airflow and the two small libraries every backend uses.
    base = sorted(line.split(": ", 1)[1] for line in metadata.splitlines()
                  if line.startswith("Requires-Dist: ") and ";" not in line)
    assert base == ["aiohttp<4,>=3.9", "apache-airflow<4,>=3.0", "asgiref>=3.7"]


def test_the_sdist_is_a_clean_source_release(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = [m.name.split("/", 1)[1] for m in sdist.getmembers() if m.isfile()]
    assert not [n for n in names if LOCAL_ONLY.search(n)]
    for required in ("pyproject.toml", "README.md", "CHANGELOG.md", "constraints.txt", "PKG-INFO",
                     "airflow_spark_async/__init__.py", "airflow_spark_async/py.typed",
                     "example_dags/livy_sum_of_squares.py", "docs/releasing.md", "tests/test_wheel_install.py"):
        assert required in names


# -- each extra in a virtualenv of its own ---------------------------------------------------------

PROBE = """
import importlib, importlib.util, json, sys
from pathlib import Path

backend = sys.argv[1]
info = importlib.import_module(f"airflow_spark_async.{backend}.provider_info")
modules = [f"airflow_spark_async.{backend}"]
modules += [f"airflow_spark_async.{backend}.{name}" for section in ("OPERATORS", "SENSORS", "HOOKS", "TRIGGERS")
            for name in getattr(info, section, ())]
modules += sorted({f"airflow_spark_async.{backend}." + link.rsplit(".", 1)[0] for link in info.EXTRA_LINKS})
for module in modules:
    importlib.import_module(module)
package = importlib.import_module(f"airflow_spark_async.{backend}")
for name in getattr(package, "__all__", ()):
    getattr(package, name)  # lazy exports resolve too
import airflow_spark_async
print("PROBE " + json.dumps({
    "imported": modules,
    "loaded": sorted({name.split(".")[0] for name in sys.modules}),
    "package_file": airflow_spark_async.__file__,
    "version": airflow_spark_async.__version__,
    "devtools": importlib.util.find_spec("airflow_spark_async_devtools") is not None,
    "providers": airflow_spark_async.get_provider_info()["package-name"],
}))
"""


def probe(python: Path, backend: str, workdir: Path) -> dict[str, Any]:
    script = workdir / "probe.py"
    script.write_text(PROBE)
    done = run([str(python), str(script), backend], cwd=workdir, timeout=180,
               env=clean_env(AIRFLOW_HOME=str(workdir / "airflow-home"), AIRFLOW__CORE__LOAD_EXAMPLES="False"))
    [line] = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    return json.loads(line.removeprefix("PROBE "))


@pytest.mark.parametrize("extra", list(BACKENDS), ids=lambda extra: extra or "no-extra")
def test_an_extra_brings_only_what_its_backend_needs_and_its_modules_import(
    extra: str, installed: Callable[[str], Path], tmp_path: Path
) -> None:
    backend, needed, forbidden = BACKENDS[extra]
    python = installed(extra)
    dists = distributions(python)
    assert dists["airflow-spark-async"] == VERSION
    assert dists["apache-airflow"] == pinned("apache-airflow")
    assert needed <= set(dists), f"[{extra}] lacks {needed - set(dists)}"
    assert not forbidden & set(dists), f"[{extra}] installed {forbidden & set(dists)}"
    assert not NEVER & set(dists), f"[{extra}] installed developer tooling {NEVER & set(dists)}"

    found = probe(python, backend, tmp_path)
    assert Path(found["package_file"]).is_relative_to(python.parents[1]), "imported from outside the virtualenv"
    assert found["version"] == VERSION and found["providers"] == "airflow-spark-async"
    assert found["devtools"] is False, "the developer tools are importable from the runtime install"
    leaked = {IMPORT_NAMES[d] for d in forbidden} & set(found["loaded"])
    assert not leaked, f"importing airflow_spark_async.{backend} imported {leaked}"


def test_a_livy_install_registers_no_connection_type_whose_hook_cannot_import(
    installed: Callable[[str], Path], tmp_path: Path
) -> None:
    python = installed("livy")
    env = clean_env(AIRFLOW_HOME=str(tmp_path / "airflow-home"), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    hooks = run([str(python.parent / "airflow"), "providers", "hooks"], cwd=tmp_path, env=env, timeout=180)
    assert "airflow_spark_async.livy.hook.LivyHook" in hooks.stdout
    assert "Error when importing hook" not in hooks.stdout + hooks.stderr, hooks.stdout


def pinned(name: str) -> str:
    [version] = re.findall(rf"^{re.escape(name)}==(\S+)$", CONSTRAINTS.read_text(), re.MULTILINE)
    return version


# -- the Livy example DAG, run from the installed wheel ---------------------------------------------


class LivyComputingTheExample(LivyServer):
    """The scripted Livy test server (no JVM: the wheel is what this test checks; tests/livy and the
    e2e suite run this DAG on real Spark). A batch of the example's application does what the
    PySpark app does — computes the sum of squares and writes it as JSON to its output argument —
    then goes through the default script: ``starting``, ``running``, ``success``."""

    async def _run_script(self, batch: Any, steps: Iterable[Any]) -> None:
        args = batch.request.get("args") or []
        if str(batch.request.get("file", "")).endswith("/sum_of_squares.py") and len(args) >= 2:
            n, output = int(args[0]), Path(args[1])
            answer = json.dumps({"n": n, "sum_of_squares": sum(k * k for k in range(1, n + 1))})
            await asyncio.to_thread(lambda: (output.parent.mkdir(parents=True, exist_ok=True),
                                             output.write_text(answer)))
        await super()._run_script(batch, steps)


RUN_DAG = """
import json, sys
from airflow.utils import db
db.initdb()
from airflow.dag_processing.dagbag import DagBag
import airflow_spark_async

bag = DagBag(sys.argv[1])
assert not bag.import_errors, bag.import_errors
run = bag.dags["livy_sum_of_squares"].test(run_conf={"n": int(sys.argv[2])})
print("DAGRUN " + json.dumps({"state": str(run.state), "package_file": airflow_spark_async.__file__,
                              "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}}))
"""


def test_the_livy_example_dag_runs_from_the_wheel_installed_with_the_livy_extra(
    installed: Callable[[str], Path], tmp_path: Path
) -> None:
    python = installed("livy")
    dags = tmp_path / "dags"  # dag.test() runs a DAG of the DAGs folder: the example, copied there
    dags.mkdir()
    shutil.copy(ROOT / "example_dags" / "livy_sum_of_squares.py", dags)
    shutil.copytree(ROOT / "example_dags" / "spark_apps", dags / "spark_apps")
    script = tmp_path / "run_dag.py"
    script.write_text(textwrap.dedent(RUN_DAG))
    n = 1000
    with LivyComputingTheExample() as livy:
        conn = {"conn_type": "livy", "host": "127.0.0.1", "port": livy.port, "schema": "http"}
        env = clean_env(AIRFLOW_HOME=str(tmp_path / "airflow-home"), AIRFLOW__CORE__DAGS_FOLDER=str(dags),
                        AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW_CONN_LIVY_DEFAULT=json.dumps(conn),
                        SPARK_ASYNC_OUTPUT_DIR=str(tmp_path / "output"))
        done = run([str(python), str(script), str(dags), str(n)], cwd=tmp_path, env=env, timeout=300)
        batches = livy.batches()
        polls = [path for method, path in livy.requests if method == "GET" and path.startswith("/batches")]

    [line] = [line for line in done.stdout.splitlines() if line.startswith("DAGRUN ")]
    result = json.loads(line.removeprefix("DAGRUN "))
    assert Path(result["package_file"]).is_relative_to(python.parents[1]), "imported from outside the virtualenv"
    assert result["state"] == "success", result["tasks"]
    assert result["tasks"] == {"sum_of_squares": "success", "check_result": "success"}
    answer = n * (n + 1) * (2 * n + 1) // 6
    assert f"RESULT sum of squares 1..{n} = {answer} (checked)" in done.stdout + done.stderr

    # The job ran on the server: one batch, named for the task, with the rendered arguments, ended success,
    # and the deferred task's trigger polled it.
    [batch] = batches
    assert batch["name"].startswith("livy_sum_of_squares.sum_of_squares")
    assert batch["state"] == "success"
    assert batch["request"]["file"] == f"file://{dags / 'spark_apps' / 'sum_of_squares.py'}"
    assert batch["request"]["args"][0] == str(n)
    assert polls, "nothing polled the batch"
    [output] = (tmp_path / "output").glob("livy-*.json")
    assert json.loads(output.read_text())["sum_of_squares"] == answer


# -- beside an older Airflow ----------------------------------------------------------------------


def test_installing_the_wheel_beside_airflow_3_0_leaves_airflow_as_it_is(
    dist: dict[str, Path], tmp_path: Path
) -> None:
    """A user on Airflow 3.0 installs the wheel with every extra: nothing may upgrade Airflow.

    Cheap: Airflow 3.0 is installed without its dependencies (two wheels), and the wheel only with
    ``--dry-run`` — uv resolves what it would do with Airflow 3.0 present and installs nothing. No
    constraints.txt here: it pins the Airflow 3.3 world, which a 3.0 user does not have (with it, uv
    would rightly upgrade Airflow)."""
    python = new_venv(tmp_path / "venv-airflow-3.0")
    uv("pip", "install", "--quiet", "--python", str(python), "--no-deps", "apache-airflow==3.0.*",
       "apache-airflow-core==3.0.*")
    before = distributions(python)
    assert before["apache-airflow"].startswith("3.0.") and before["apache-airflow-core"].startswith("3.0.")

    plan = uv("pip", "install", "--dry-run", "--python", str(python), f"{dist['wheel']}[all]", timeout=420)
    changes = plan.stdout + plan.stderr
    assert "Would install" in changes, changes
    assert re.search(r"^ \+ airflow-spark-async==", changes, re.MULTILINE), changes
    touched = re.findall(r"^ [-+] (apache-airflow(?:-core)?)==(\S+)", changes, re.MULTILINE)
    assert touched == [], f"installing the wheel would change Airflow: {touched}"
