"""The comparison run behind `make bench`: six auth designs, measured side by side.

session, session-cached, hybrid, jwt-push, jwt-off and jwt-cookie (loadtests/modes.py).
Starts the local stack on free ports (or targets `--host`), creates the load-test users, runs
Locust headless for each mode with the same users and offered load, interleaved over rounds,
restarting the services only where the next mode's settings differ, and around each phase
scrapes every service's /metrics and Redis INFO, so that CPU per request and store operations
per request come from the servers, not from wall-clock throughput alone. After each phase,
revocation latency samples; after the last phase of each group of settings, the store outage.
Then login cost, credential size and store distance. Results go to reports/<timestamp>/ and
reports/latest/ (see loadtests.report).
"""

from __future__ import annotations

import time


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)
