"""A driver that only waits: argv[1] seconds, then exits with argv[2] (default 0).

Used by the concurrency and fault examples, where what matters is how long the job runs
on the cluster, not what it computes."""

import sys
import time

time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 10)
sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
