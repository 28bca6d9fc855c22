"""Turning a job meant for a real Livy, EMR or EMR Serverless into a ``spark-submit`` on the local cluster.

Why: the emulators should run a job for real whenever this machine can -- the point of a local stack
is to see a DAG's Spark code run, not a clock tick. A job can run here when its application is a
local file (``file://``, ``local://`` or a plain path that exists), or when it is Spark's SparkPi from
the examples jar every EMR release and Spark distribution ship (``spark-examples*.jar``): the pyspark
wheel has no examples jar, but it has the same program in Python (``examples/src/main/python/pi.py``),
which then runs instead. Anything else (``s3://``, ``hdfs://``, ``dbfs:/``, a jar that is not here)
cannot run, and the emulator moves it through its states on a clock instead.

Every job runs in client mode against the local master, with the defaults the Livy test server
gives its batches: one core (``spark.cores.max``, so that several jobs share the cluster) and the
driver bound to 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["SPARK_PI", "local_application", "local_livy_request", "pi_py", "spark_env", "spark_home",
           "spark_submit_argv"]

SPARK_PI = "org.apache.spark.examples.SparkPi"

#: spark-submit's options that take a value (SparkSubmitArguments); everything else is a flag
_VALUED = frozenset({
    "--master", "--deploy-mode", "--class", "--name", "--jars", "--packages", "--exclude-packages",
    "--repositories", "--py-files", "--files", "--archives", "--conf", "-c", "--properties-file",
    "--driver-memory", "--driver-java-options", "--driver-library-path", "--driver-class-path",
    "--executor-memory", "--proxy-user", "--driver-cores", "--total-executor-cores", "--executor-cores",
    "--num-executors", "--queue", "--principal", "--keytab",
})
#: options the local cluster decides (or that need a Hadoop cluster this machine has not got)
_DROPPED = frozenset({"--master", "--deploy-mode", "--queue", "--principal", "--keytab", "--proxy-user",
                      "--num-executors"})
DEFAULT_CONF = {
    "spark.cores.max": "1",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.showConsoleProgress": "false",
}


def spark_home() -> Path:
    """The installed pyspark package: its ``bin/spark-submit`` is the Spark the local cluster runs."""
    import pyspark

    return Path(pyspark.__file__).parent


def pi_py() -> Path:
    return spark_home() / "examples" / "src" / "main" / "python" / "pi.py"


def local_application(application: str, main_class: str | None) -> tuple[Path, bool] | None:
    """``(file to run, whether it replaces SparkPi's jar)`` -- or ``None`` when the job cannot run here."""
    path = application
    for scheme in ("file://", "local://"):
        if path.startswith(scheme):
            path = path[len(scheme):]
            break
    else:
        if "://" in path or path.startswith("dbfs:"):
            path = ""
    if path and Path(path).is_file():
        return Path(path), False
    name = application.rsplit("/", 1)[-1]
    if main_class == SPARK_PI and name.startswith("spark-examples") and name.endswith(".jar"):
        return pi_py(), True
    return None


def _split(args: Sequence[str]) -> tuple[list[tuple[str, str | None]], str | None, list[str]]:
    """spark-submit's arguments as (options, application, application arguments)."""
    options: list[tuple[str, str | None]] = []
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg.startswith("-") and "=" in arg and arg.split("=", 1)[0] in _VALUED:
            name, value = arg.split("=", 1)
            options.append((name, value))
            i += 1
        elif arg in _VALUED and i + 1 < len(items):
            options.append((arg, items[i + 1]))
            i += 2
        elif arg.startswith("-"):
            options.append((arg, None))
            i += 1
        else:
            return options, arg, items[i + 1:]
    return options, None, []


def spark_submit_argv(args: Sequence[str], master: str) -> list[str] | None:
    """The local ``spark-submit`` command for a job's spark-submit arguments (an EMR step's
    ``command-runner.jar`` args after ``spark-submit``, or EMR Serverless' entry point with its
    ``sparkSubmitParameters``); ``None`` when the application cannot run on this machine."""
    options, application, app_args = _split(args)
    if application is None:
        return None
    main_class = next((value for name, value in options if name == "--class"), None)
    local = local_application(application, main_class)
    if local is None:
        return None
    path, replaced = local
    given = dict(value.split("=", 1) for name, value in options if name in ("--conf", "-c") and value and "=" in value)
    executor_cores = next((value for name, value in options if name == "--executor-cores"),
                          given.get("spark.executor.cores"))
    defaults = dict(DEFAULT_CONF)
    if executor_cores and executor_cores.isdigit():
        # one executor of the size the job asks for: a cap below it would never schedule one
        defaults["spark.cores.max"] = str(max(1, int(executor_cores)))
    argv = [str(spark_home() / "bin" / "spark-submit"), "--master", master, "--deploy-mode", "client"]
    for key, value in defaults.items():
        if key not in given:
            argv += ["--conf", f"{key}={value}"]
    for name, value in options:
        if name in _DROPPED or (replaced and name in ("--class", "--jars")):
            continue
        argv += [name] if value is None else [name, value]
    return [*argv, str(path), *app_args]


def local_livy_request(request: Mapping[str, object]) -> dict[str, object] | None:
    """A Livy batch request with its ``file`` made local (SparkPi's jar → pi.py); ``None``: cannot run."""
    class_name = request.get("className")
    local = local_application(str(request.get("file") or ""), str(class_name) if class_name else None)
    if local is None:
        return None
    path, replaced = local
    out = {**request, "file": str(path)}
    if replaced:
        out.pop("className", None)
    return out


def spark_env(conf_dir: Path) -> dict[str, str]:
    """The environment of a local ``spark-submit``: this venv's Python for driver and executors, an
    empty ``SPARK_CONF_DIR`` (no stray spark-defaults.conf), nothing of the caller's Spark settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
    conf_dir.mkdir(parents=True, exist_ok=True)
    env.update(SPARK_HOME=str(spark_home()), SPARK_CONF_DIR=str(conf_dir), SPARK_LOCAL_IP="127.0.0.1",
               PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    return env
