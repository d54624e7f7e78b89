"""report.md's sections on what happens inside the stack: per-hop attribution from the traced
phases, and the session store as a Redis Cluster."""

from __future__ import annotations

from devstack.stores import NODE_TIMEOUT_MS
from loadtests.bench.cluster import POLL_S
from loadtests.bench.results import BenchResults, ClusterResults, Phase
from loadtests.report.summary import mode_order
from loadtests.report.tables import fmt, statuses_text, table

HOPS = ("gateway", "orders", "auth")


def _agreement(spans_us: float, metrics_us: float | None) -> str:
    if not metrics_us:
        return "n/a"
    return f"{spans_us / metrics_us:.2f}x"


def traced(results: BenchResults) -> list[str]:
    """Per design and hop, from the spans of a short traced phase, beside /metrics."""
    runs = sorted(results.get("traced") or [], key=lambda t: mode_order(t["mode"]))
    if not runs:
        return []
    rows: list[list[object]] = []
    ratios: dict[bool, list[float]] = {True: [], False: []}  # by "asks the session store"
    for run in runs:
        for hop in sorted(run["hops"], key=lambda h: HOPS.index(h) if h in HOPS else len(HOPS)):
            h = run["hops"][hop]
            stores = sorted(h["store_calls_per_request"])
            metrics = h["metrics_check_mean_us"]
            if metrics:
                asks = h["store_calls_per_request"].get("session_store", 0.0) >= 0.5
                ratios[asks].append(h["verify_mean_us"] / metrics)
            rows.append(
                [
                    run["mode"],
                    hop,
                    h["requests"],
                    h["verify_p50_us"],
                    h["verify_mean_us"],
                    fmt(metrics),
                    _agreement(h["verify_mean_us"], metrics),
                    "; ".join(f"{s} {fmt(h['store_p50_us'][s])}" for s in stores) or "-",
                    "; ".join(f"{s} {fmt(h['store_calls_per_request'][s], 2)}" for s in stores)
                    or "-",
                ]
            )
    agreement = " ".join(
        f"Where {what}, the span means are {min(r):.2f}x to {max(r):.2f}x the /metrics means."
        for what, r in (
            ("the check asks the session store", ratios[True]),
            ("the check is CPU only or a cache hit", ratios[False]),
        )
        if r
    )
    return [
        "## Inside each hop: per-hop attribution from traces",
        "",
        "Each design ran once more for a short phase with tracing on (OpenTelemetry, OTLP/HTTP to "
        "a receiver in the bench, devstack/otlp.py); tracing costs CPU of its own, so these phases "
        "are kept out of every other table. For each hop, over the requests it verified: the "
        "median time in its `authscale.verify` span per request, the mean per verification (the "
        "span's view of what /metrics' `auth_check_duration_seconds` measures, set beside it "
        "from the same phase), and the median time per request in store calls (redis-py's "
        "client spans, by store; zero for a request that made none) with the calls per request. "
        "Only requests that started inside the phase's measurement window count, the window "
        f"/metrics covers. {agreement} /metrics' timer starts before the span opens and stops "
        "after it closes, so it also pays for creating and ending the span (tens of us with "
        "tracing on): a check of tens of us reads well below /metrics in its span; the longer "
        "a check waits for the store, the closer the two.",
        "",
        table(
            [
                "mode",
                "hop",
                "verified requests",
                "verify p50 us (spans)",
                "verify mean us (spans)",
                "check mean us (/metrics)",
                "spans / metrics",
                "store time p50 us per request",
                "store calls per request",
            ],
            rows,
        ),
    ]


def _phase_row(name: str, phase: Phase) -> list[object]:
    """A session phase's figures, the session store's summed over its primaries."""
    session = {k: v for k, v in phase["store_ops_per_request"].items() if k != "data_store"}
    session_cpu = {k: v for k, v in phase["store_cpu_us_per_request"].items() if k != "data_store"}
    return [
        name,
        phase["rps"],
        phase["p50_ms"],
        phase["p99_ms"],
        phase["failures"],
        sum(phase["cpu_us_per_request"].values()),
        fmt(sum(session.values()), 2),
        sum(session_cpu.values()),
    ]


def cluster(results: BenchResults) -> list[str]:
    c: ClusterResults | None = results.get("cluster")
    if not c:
        return []
    spread = c["spread"]
    shares = ", ".join(
        f"{shard} {share:.0%} ({fmt(spread['ops_per_request'][shard], 2)} per request)"
        for shard, share in sorted(spread["share"].items())
    )
    parts = [
        "## The session store as a Redis Cluster",
        "",
        f"A second stack of the same services, its session store a Redis Cluster of "
        f"{c['primaries']} primaries and {c['replicas']} replicas (redis-py's `RedisCluster`), "
        "ran the session design's load; the bench's own stack (one Redis) ran the same load just "
        "before. Both on this one machine: the shards share its cores, so the cluster shows what "
        "sharding costs and how the load spreads, not the capacity of more machines.",
        "",
        table(
            [
                "session store",
                "req/s",
                "p50 ms",
                "p99 ms",
                "failures",
                "service CPU us per request",
                "session-store ops per request",
                "session-store CPU us per request",
            ],
            [
                _phase_row("one Redis", c["single"]),
                _phase_row(f"cluster, {c['primaries']} primaries", c["cluster"]),
            ],
        ),
        "",
        f"Store commands by primary over the cluster phase: {shares}. Each of the "
        f"{results['load']['users']} Locust users holds one session, and a session's commands "
        "go to the primary that owns its key's slot: with this few keys the split follows where "
        "they happen to hash; with many sessions it evens out.",
    ]
    store = c["throughput"]
    if store:
        parts += [
            "",
            f"The store alone (`{store['command']}`, the lower of GET and SET): one primary "
            f"{fmt(store['single_rps'], 0)} ops/s, the cluster {fmt(store['cluster_rps'], 0)} "
            f"ops/s ({store['ratio']:.2f}x; redis-benchmark's own client shares the same cores).",
        ]
    f = c["failover"]
    recovered = (
        f"session requests for its slots answered again {f['recovered_s']} s after the kill"
        if f["recovered_s"] is not None
        else "session requests for its slots had not recovered when polling stopped"
    )
    refused = f["revoked_refused"]
    revocation = (
        "a JWT logged out during the failover was refused afterwards at "
        + ", ".join(h for h, ok in refused.items() if ok)
        + (
            "; still accepted at " + ", ".join(h for h, ok in refused.items() if not ok)
            if not all(refused.values())
            else " (every hop: no revocation lost)"
        )
        if refused
        else "the logout during the failover was never accepted"
    )
    parts += [
        "",
        f"A primary's failure: the primary holding a probe session was killed while session and "
        f"JWT requests ran through the gateway, {POLL_S * 1000:.0f} ms apart; {recovered} (the "
        f"replica took over; node timeout {NODE_TIMEOUT_MS / 1000:g} s). Session answers "
        f"meanwhile: {statuses_text(f['session_statuses'])}; "
        f"JWT answers: {statuses_text(f['jwt_statuses'])}. {f['sessions_back']} of the "
        f"{f['sessions_on_victim']} sessions on that primary worked afterwards with no new login; "
        f"{revocation}.",
    ]
    return parts


def notes(results: BenchResults) -> list[str]:
    """The late phases that were skipped or failed, and why (the rest of the run stands)."""
    said = results.get("notes") or []
    if not said:
        return []
    return ["## Notes", "", *[f"- {note}" for note in said]]
