"""The comparison run behind `make bench`: sessions vs JWT (revocation off and push), measured.

Starts the local stack on free ports (or targets `--host`), creates the load-test users, runs
Locust headless for each mode with the same users and offered load, interleaved over rounds,
and around each phase scrapes every service's /metrics and Redis INFO, so that CPU per request
and store operations per request come from the servers, not from wall-clock throughput alone.
Then the experiments: store distance, revocation latency, store outage, login cost and
credential size. Results go to reports/<timestamp>/ and reports/latest/ (see loadtests.report).
"""

from __future__ import annotations

import time


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)
