"""A driver that only waits: argv[1] seconds, then exits with argv[2] (default 0).

Used by the concurrency and fault examples, where what matters is how long the job runs
on the cluster, not what it computes. A file named by argv[3], once it exists, ends the wait
early: a test holds jobs "for ever" and lets them end when it has seen what it waits for."""

import os
import sys
import time

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10
release = sys.argv[3] if len(sys.argv) > 3 else ""
ends = time.monotonic() + seconds
while (left := ends - time.monotonic()) > 0 and not (release and os.path.exists(release)):
    time.sleep(min(left, 0.5))
sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
