"""A PySpark application that reports what spark-submit's options gave it: its arguments, one
property, the jars Spark added and whether the named JVM classes load — written as JSON to the
path given as the first argument. ``python classpath_probe.py OUTPUT [CLASS ...] -- [ARG ...]``."""

from __future__ import annotations

import json
import os
import sys

from pyspark.sql import SparkSession


def main() -> None:
    output, rest = sys.argv[1], sys.argv[2:]
    split = rest.index("--") if "--" in rest else len(rest)
    classes, args = rest[:split], rest[split + 1:]
    spark = SparkSession.builder.getOrCreate()
    jvm = spark.sparkContext._jvm
    loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
    loaded: dict[str, object] = {}
    for name in classes:
        try:
            jvm.java.lang.Class.forName(name, True, loader)
            loaded[name] = True
        except Exception as exc:  # reported: the test says what was expected
            loaded[name] = str(exc)[:300]
    conf = spark.sparkContext.getConf()
    result = {
        "args": args,
        "partitions": conf.get("spark.sql.shuffle.partitions", None),
        "app_name": conf.get("spark.app.name", None),
        "jars": [jar for jar in spark.sparkContext._jsc.sc().listJars().mkString(",").split(",") if jar],
        "loaded": loaded,
        "env": {"PROBE_TZ": os.environ.get("PROBE_TZ")},
    }
    spark.stop()
    with open(output, "w") as fh:
        json.dump(result, fh, sort_keys=True)


if __name__ == "__main__":
    main()
