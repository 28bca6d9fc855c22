"""Test driver: sleep argv[1] seconds, then exit with argv[2] (default 0), saying so on stderr."""

import sys
import time

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
code = int(sys.argv[2]) if len(sys.argv) > 2 else 0
print(f"sleeping {seconds}s then exiting {code}", flush=True)
time.sleep(seconds)
if code:
    print(f"conformance-app failing on purpose with exit code {code}", file=sys.stderr, flush=True)
sys.exit(code)
