"""``LivyBatchOperator`` as a drop-in ``LivyOperator``: the same arguments with the same meaning,
proven against the official provider's own code, and a DAG written for the official operator run
through the Livy test server with only its imports changed."""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import tenacity
from airflow.providers.apache.livy.hooks.livy import LivyHook
from airflow.providers.apache.livy.operators.livy import LivyOperator
from airflow.providers.apache.livy.sensors.livy import LivySensor

from airflow_spark_async.core.airflow_versions import TaskDeferred
from airflow_spark_async.core.errors import ConfigurationError
from airflow_spark_async.core.operator import SparkJobFailed
from airflow_spark_async.core.spec import SparkJob
from airflow_spark_async.livy.operators import LivyBatchOperator, policy_from_retry_args
from airflow_spark_async.livy.sensors import LivyBatchSensor
from tests.conformance.harness import FakeTI, defer, rebuild, run_to_end, run_trigger
from tests.conftest import APPS
from tests.livy.conftest import CONN, context, set_conn
from tests.servers.livy_server import LivyServer, Step

EXAMPLE_APP = Path(__file__).parents[2] / "example_dags" / "spark_apps" / "sum_of_squares.py"


def _parameters(cls: type) -> dict[str, inspect.Parameter]:
    return {
        name: p
        for name, p in inspect.signature(cls.__init__).parameters.items()  # type: ignore[misc]
        if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


@pytest.mark.parametrize(("official", "ours"), [(LivyOperator, LivyBatchOperator), (LivySensor, LivyBatchSensor)])
def test_every_official_argument_is_accepted(official: type, ours: Any) -> None:
    theirs, mine = _parameters(official), _parameters(ours)
    assert sorted(set(theirs) - set(mine)) == []
    for name, param in theirs.items():
        assert mine[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        if name in ("livy_conn_id",):  # same default, spelled None here so conn_id can stand in
            assert param.default == "livy_default" and ours.default_conn_id == "livy_default"
    assert set(official.template_fields) <= set(ours.template_fields)  # type: ignore[attr-defined]


OFFICIAL_CASES: list[dict[str, Any]] = [
    {"file": "s3://b/app.py", "args": [1, "x", 2.5], "py_files": ["s3://b/lib.zip"], "conf": {"spark.a": "1"},
     "driver_memory": "1g", "executor_memory": "2g", "num_executors": 3, "queue": "etl", "proxy_user": "bob",
     "name": "daily"},
    {"file": "hdfs:///jars/app.jar", "class_name": "com.example.Main", "jars": ["hdfs:///jars/dep.jar"],
     "files": ["hdfs:///f.txt"], "archives": ["hdfs:///env.tgz#env"], "driver_cores": 2, "executor_cores": 4},
    {"file": "/opt/spark/examples/jars/spark-examples.jar"},  # a jar run by its manifest's Main-Class
]


@pytest.mark.parametrize("args", OFFICIAL_CASES, ids=["python", "jar-with-class", "jar-manifest"])
def test_the_request_body_is_the_official_hooks(args: dict[str, Any]) -> None:
    official = LivyOperator(task_id="t", **args)
    ours = LivyBatchOperator(task_id="t", **args)
    assert ours.spark_params == official.spark_params  # the same templated field, the same values
    expected = LivyHook.build_post_batch_body(**official.spark_params)  # type: ignore[arg-type]
    request = ours.build_request(context(FakeTI(dag_id="d", task_id="t")), "asa-key", 1)
    body = request.body(f"{request.job.name}-asa-key")
    assert body.pop("name") == f"{args.get('name', 'd.t')}-asa-key"
    expected.pop("name", None)
    assert body == expected


def test_core_counts_given_as_strings_become_integers_as_livy_parses_them() -> None:
    op = LivyBatchOperator(task_id="t", file="a.jar", class_name="M", driver_cores="2", num_executors="4")
    job = op.build_request(context(), "asa-key", 1).job
    assert (job.driver_cores, job.num_executors) == (2, 4)
    bad = LivyBatchOperator(task_id="t", file="a.jar", class_name="M", executor_cores="many")
    with pytest.raises(ConfigurationError, match="executor_cores"):
        bad.build_request(context(), "asa-key", 1)


def test_invalid_official_arguments_fail_like_the_official_ones_before_submitting() -> None:
    # ConfigurationError is a ValueError, which is what the official hook raises for these.
    for args in ({"driver_memory": "lots"}, {"args": "not-a-list"}, {"conf": ["a"]}):
        op = LivyBatchOperator(task_id="t", file="/a.py", **args)
        with pytest.raises(ValueError):
            op.build_request(context(), "asa-key", 1)
    with pytest.raises(ConfigurationError, match="file"):
        LivyBatchOperator(task_id="t")
    with pytest.raises(ConfigurationError, match="not both"):
        LivyBatchOperator(task_id="t", job=SparkJob(application="/a.py"), file="/b.py")
    with pytest.raises(ConfigurationError, match="differ"):
        LivyBatchOperator(task_id="t", file="/a.py", conn_id="a", livy_conn_id="b")


def test_official_retry_and_durability_arguments_map_onto_the_poll_loop() -> None:
    op = LivyBatchOperator(
        task_id="t",
        file="/a.py",
        polling_interval=7,
        retry_args={"stop": tenacity.stop_after_attempt(5), "wait": tenacity.wait_exponential(multiplier=2, max=30),
                    "retry": tenacity.retry_if_exception_type(Exception)},
        durable=False,
    )
    assert (op.poll_policy.interval, op.poll_policy.error_budget) == (7, 4)
    assert (op.poll_policy.backoff_base, op.poll_policy.backoff_max) == (2, 30)
    assert op.reattach is False
    assert policy_from_retry_args({"wait": tenacity.wait_fixed(3)}) == {"backoff_base": 3.0, "backoff_max": 3.0}
    assert policy_from_retry_args({"stop": tenacity.stop_any(tenacity.stop_after_delay(9),
                                                             tenacity.stop_after_attempt(2))}) == {"error_budget": 1}
    assert LivyBatchOperator(task_id="t", file="/a.py").reattach is True


def test_polling_interval_zero_submits_and_returns_without_waiting(livy: LivyServer) -> None:
    """The official meaning of polling_interval <= 0: fire and forget, with the batch id as result."""
    livy.script(Step("running"))
    op = LivyBatchOperator(task_id="fire", livy_conn_id=CONN, file="/a.py", polling_interval=0, deferrable=True)
    ti = FakeTI()
    assert op.execute(context(ti)) == 0  # type: ignore[arg-type]  # no TaskDeferred; an int, as officially
    assert ti.xcoms["job_id"] == "0" and ti.xcoms["app_id"].startswith("application_")
    assert livy.batch_state(0) == "running"


def test_a_batch_fired_before_livy_knows_its_application_pushes_no_app_id(livy: LivyServer) -> None:
    """Airflow 3.0 fails a task that pushes an XCom of None (its API answers 422): no app_id yet, no XCom."""
    livy.script(Step("starting"))
    op = LivyBatchOperator(task_id="fire", livy_conn_id=CONN, file="/a.py", polling_interval=0, deferrable=True)
    ti = FakeTI()
    assert op.execute(context(ti)) == 0  # type: ignore[arg-type]
    assert "app_id" not in ti.xcoms and ti.xcoms["job_id"] == "0"


def test_non_deferrable_runs_the_same_poll_loop_on_the_worker(livy: LivyServer) -> None:
    livy.script(Step("running", 0.5, ["computing"]), Step("dead"))
    op = LivyBatchOperator(task_id="sync", livy_conn_id=CONN, file="/a.py", polling_interval=0.2, deferrable=False)
    with pytest.raises(SparkJobFailed, match="the Spark application failed") as failure:
        op.execute(context())
    assert "computing" in str(failure.value)


def test_links_known_once_the_application_runs_are_pushed_at_the_end(livy: LivyServer) -> None:
    livy.script(Step("running", 0.5), Step("success"))
    op = LivyBatchOperator(task_id="links", livy_conn_id=CONN, file="/a.py", polling_interval=0.2, deferrable=True)
    ti = FakeTI()
    trigger = rebuild(defer(op, ti))
    assert "_link_LivySparkUILink" not in ti.xcoms  # unknown at submission time
    [event] = run_trigger(trigger)
    assert op.execute_complete(context(ti), event) == 0  # type: ignore[arg-type]
    assert ti.xcoms["_link_LivySparkUILink"].startswith("http://127.0.0.1:8088/proxy/application_")
    assert ti.xcoms["_link_LivyBatchLink"] == f"{livy.origin}/ui/batch/0/log"
    assert ti.xcoms["app_id"].startswith("application_")


def test_a_retry_reattaches_to_the_running_batch_of_an_earlier_try(livy: LivyServer) -> None:
    livy.script(Step("running"))
    def operator() -> LivyBatchOperator:
        return LivyBatchOperator(task_id="r", livy_conn_id=CONN, file="/a.py", polling_interval=1, deferrable=True)

    first = defer(operator(), FakeTI())
    second = defer(operator(), FakeTI(try_number=2))
    assert first.job_id == second.job_id == "0"
    assert livy.count("POST", r"^/batches$") == 1


def test_the_official_operator_runs_against_the_test_server(livy: LivyServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test server speaks Livy as the official client expects it to."""
    set_conn(monkeypatch, "livy_default", livy.port)
    livy.script(Step("starting", 0.2), Step("running", 0.3, ["official client"]), Step("success"))
    op = LivyOperator(task_id="official", file="/a.py", args=[1], polling_interval=0.1, durable=False)  # type: ignore[arg-type]
    ti = FakeTI()
    assert op.execute(context(ti)) == 0  # type: ignore[arg-type]
    assert ti.xcoms["app_id"].startswith("application_")
    assert livy.count("GET", r"/log\?from=0&size=100$") >= 1


OFFICIAL_DAG = '''
"""A DAG written for apache-airflow-providers-apache-livy."""
from datetime import datetime

from airflow.sdk import DAG, task
from airflow.providers.apache.livy.operators.livy import LivyOperator
from airflow.providers.apache.livy.sensors.livy import LivySensor

with DAG(dag_id="{dag_id}", schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:
    compute = LivyOperator(
        task_id="sum_of_squares",
        file="file://{app}",
        args=[20000, "{out}/{{{{ run_id | replace(':', '-') | replace('+', '-') }}}}.json"],
        driver_memory="512m",
        executor_memory="512m",
        conf={{"spark.cores.max": "1"}},
        polling_interval=2,
        deferrable=True,
    )
    fire = LivyOperator(task_id="fire", file="file://{sleep}", args=["6"], polling_interval=0)
    wait = LivySensor(task_id="wait", batch_id="{{{{ ti.xcom_pull(task_ids='fire') }}}}", poke_interval=2)

    @task
    def next_batch_id(batch_id=None):
        """Downstream code written against the official operator's int batch id."""
        if not isinstance(batch_id, int):
            raise TypeError(f"the batch id is {{type(batch_id).__name__}} {{batch_id!r}}, not an int")
        return batch_id + 1

    compute >> fire >> wait >> next_batch_id(fire.output)
'''
OUR_IMPORTS = {
    "from airflow.providers.apache.livy.operators.livy import LivyOperator":
        "from airflow_spark_async.livy.operators import LivyBatchOperator as LivyOperator",
    "from airflow.providers.apache.livy.sensors.livy import LivySensor":
        "from airflow_spark_async.livy.sensors import LivyBatchSensor as LivySensor",
}


def _load(path: Path, source: str) -> ModuleType:
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"dag_{uuid.uuid4().hex}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.cluster
def test_a_dag_written_for_the_official_operator_runs_with_only_its_imports_changed(
    spark_livy: LivyServer, dags_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag_id = f"official_livy_{uuid.uuid4().hex[:6]}"
    source = OFFICIAL_DAG.format(dag_id=dag_id, app=EXAMPLE_APP, sleep=APPS / "sleep_then_exit.py", out=tmp_path)
    ours = source
    for official, replacement in OUR_IMPORTS.items():
        assert official in ours
        ours = ours.replace(official, replacement)
    assert [a for a, b in zip(source.splitlines(), ours.splitlines(), strict=True) if a != b] == list(OUR_IMPORTS)

    # The official DAG parses to the same job description as ours.
    official_dag = _load(tmp_path / "official.py", source).dag
    set_conn(monkeypatch, "livy_default", spark_livy.port)
    dag = _load(dags_folder / f"{dag_id}.py", ours).dag
    for task_id in ("sum_of_squares", "fire"):
        assert dag.get_task(task_id).spark_params == official_dag.get_task(task_id).spark_params
    assert dag.get_task("wait").batch_id == official_dag.get_task("wait").batch_id

    spark_livy.clear_requests()
    run = dag.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    [result] = tmp_path.glob("*.json")
    assert json.loads(result.read_text())["sum_of_squares"] == 20000 * 20001 * 40001 // 6
    posts = spark_livy.posts
    assert [re.sub(r"-asa-[0-9a-f]{24}-\d+(-\d+)?$", "", p["name"]) for p in posts] == [
        f"{dag_id}.sum_of_squares", f"{dag_id}.fire"]
    assert posts[0]["args"] == ["20000", str(result)], "the templated argument was rendered"


def test_job_failure_reaches_the_task_with_livys_explanation(livy: LivyServer) -> None:
    livy.script(Step("running", 0.3, ["java.lang.OutOfMemoryError: Java heap space"]), Step("dead"))
    op = LivyBatchOperator(task_id="oom", livy_conn_id=CONN, job=SparkJob(application="/a.py"), poll_interval=0.2,
                           deferrable=True)
    with pytest.raises(SparkJobFailed) as failure:
        run_to_end(op, FakeTI(task_id="oom"))
    assert "ended dead" in str(failure.value) and "OutOfMemoryError" in str(failure.value)


def test_polling_interval_and_poll_interval_are_one_setting() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        LivyBatchOperator(task_id="t", file="/a.py", polling_interval=5, poll_interval=5)
    with pytest.raises(ConfigurationError, match="interval"):
        LivyBatchOperator(task_id="t", file="/a.py", polling_interval=float("nan"))
    assert LivyBatchOperator(task_id="t", file="/a.py").poll_interval == 10.0


def test_defer_uses_the_stable_trigger_class_path(livy: LivyServer) -> None:
    livy.script(Step("running"))
    op = LivyBatchOperator(task_id="cp", livy_conn_id=CONN, file="/a.py", polling_interval=3, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context())
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath == "airflow_spark_async.livy.triggers.LivyBatchTrigger"
    assert kwargs["conn_id"] == CONN and kwargs["policy"]["interval"] == 3
