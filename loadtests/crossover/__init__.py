"""The crossover, measured: where each auth design's lines cross as load, verifying hops,
store distance and revocation bounds change (issue 12; the plan in DESIGN.md, "The crossover").

    python -m loadtests.crossover [--long] [--out DIR]      (default DIR: reports/latest/crossover)

For every design of loadtests/modes.py (read when the run starts), on the local stack on free
ports, with each design's own settings and Locust user class:

1. capacity at the knee: offered load stepped up, designs interleaved window by window, until
   p99 passes the SLO (50 ms) or requests fail; Locust's own CPU watched, steps where it was
   the limit marked; CPU per request at the knee from every service's /metrics and the stores'
   INFO; latency-vs-offered-load curves;
2. hops: 1 (GET through a gateway with edge auth off), 2 (GET) and 3 (POST: orders asks auth)
   verifying hops; per-hop CPU, session-store operations and latency fitted by least squares,
   predicted against measured per point;
3. distance: the session store 0, 0.5, 1, 2 and 5 ms RTT away: a redis-server in a network
   namespace behind a veth pair, tc netem where the kernel has it, the TCP delay proxy where not;
4. revocation lag per hop over many logouts: gateway, each orders replica, auth;
5. key rotation under load: auth restarts with a new signing key while the verifiers take keys
   from its JWKS; failed requests, old tokens, unknown-kid refetches;
6. the model's inputs (loadtests/model.py): the fits, the revocation lags, one store shard's
   capacity (redis-benchmark); and nginx proxying the same GET, as the gateway's reference.

Writes results.json (loadtests/crossover/results.py), report.md and report.html (plots
embedded) and the PNGs. The default run fits in about five minutes on a 2-core machine;
--long draws the full curves.
"""

from __future__ import annotations

import time


def log(message: str) -> None:
    print(f"[crossover {time.strftime('%H:%M:%S')}] {message}", flush=True)
