"""A PySpark application with a checkable answer: the sum of k**2 for k = 1..n, plus the
word counts of a small text, written as JSON to the path given as the second argument.

sum_{k=1}^{n} k^2 = n (n + 1) (2n + 1) / 6, so the result can be checked without Spark.
"""

from __future__ import annotations

import json
import os
import sys
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

TEXT = "to be or not to be that is the question whether tis nobler in the mind to suffer"


def main() -> None:
    n = int(sys.argv[1])
    output = sys.argv[2]
    hold = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    spark = SparkSession.builder.appName("sum-of-squares").getOrCreate()
    total = spark.range(1, n + 1).select(F.sum(F.col("id") * F.col("id")).alias("s")).collect()[0]["s"]
    words = spark.createDataFrame([(w,) for w in TEXT.split()], ["word"]).groupBy("word").count().collect()
    # lets demos and tests watch a job that runs for a while; a file "<output>.release" ends the
    # hold early (a test holds a job until it has seen what it waits for)
    ends = time.monotonic() + hold
    while (left := ends - time.monotonic()) > 0 and not os.path.exists(output + ".release"):
        time.sleep(min(left, 0.5))
    spark.stop()
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    result = {"n": n, "sum_of_squares": int(total), "word_counts": {r["word"]: r["count"] for r in words}}
    with open(output, "w") as fh:
        json.dump(result, fh, sort_keys=True)
    print(f"wrote {output}: sum_of_squares={total}")


if __name__ == "__main__":
    main()
