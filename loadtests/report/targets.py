"""report.md's sections that read the run against the designs' targets and project it to
large rates."""

from __future__ import annotations

import math
from collections.abc import Mapping

from loadtests.bench.results import BenchResults
from loadtests.modes import HYBRID, JWT_PUSH, SESSION_CACHED
from loadtests.report.experiments import micro_ratio
from loadtests.report.summary import ModeSummary, capacity
from loadtests.report.tables import fmt, revocation_of, table

Summary = Mapping[str, ModeSummary]


def _ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or not b:
        return float("nan")
    return a / b


def targets(results: BenchResults, summary: Summary) -> list[str]:
    """The performance targets of the designs between the extremes, read off this run."""
    rows: list[list[object]] = []
    micro = {r["name"]: r for r in results.get("microbench", [])}
    hit = micro.get("Verifier session lookup, cache hit")
    if hit:
        floor = micro.get(hit.get("baseline") or "")
        rows.append(
            [
                "cached session check on a hit (microbench, wall us)",
                "<= 5",
                f"{hit['wall_us']:.2f}"
                + (f" (floor, {floor['name']}: {floor['wall_us']:.2f})" if floor else ""),
            ]
        )
    jwt_hit = micro.get("Verifier JWT, cache hit")
    if jwt_hit:
        rows.append(
            [
                "JWT check on a cache hit, at a service (microbench, wall us)",
                "< 10",
                f"{jwt_hit['wall_us']:.2f}",
            ]
        )
    lookup = micro.get("Verifier session lookup")
    if lookup and lookup.get("baseline"):
        rows.append(
            [
                f"session check / {lookup['baseline']} (microbench)",
                "<= 1.2",
                micro_ratio(list(micro.values()), lookup),
            ]
        )
    cached = summary.get(SESSION_CACHED.name)
    if cached:
        rows.append(
            [
                "session-cached: session-store ops per request",
                "near 0 (session: "
                + fmt(
                    summary.get("session", cached)["store_ops_per_request"].get("session_store"), 2
                )
                + ")",
                fmt(cached["store_ops_per_request"].get("session_store"), 3),
            ]
        )
    hybrid, jwt = summary.get(HYBRID.name), summary.get(JWT_PUSH.name)
    if hybrid and jwt:
        for service, target in (("gateway", "<= 1.2"), ("orders", "about 1.0")):
            rows.append(
                [
                    f"hybrid {service} CPU / jwt-push {service} CPU",
                    target,
                    f"{fmt(_ratio(hybrid['cpu_us_per_request'].get(service), jwt['cpu_us_per_request'].get(service)), 2)}"
                    f" ({fmt(hybrid['cpu_us_per_request'].get(service))} / "
                    f"{fmt(jwt['cpu_us_per_request'].get(service))} us)",
                ]
            )
    if hybrid:
        rows.append(
            [
                "hybrid: token exchanges per request",
                "near 0",
                fmt(hybrid["token_exchanges_per_request"].get("miss"), 4),
            ]
        )
    for name in (SESSION_CACHED.name, HYBRID.name, "jwt-cookie"):
        r = revocation_of(results, name)
        if r is not None:
            rows.append(
                [
                    f"{name}: revocation lag, every hop (worst of {r.get('samples', 1)})",
                    "<= 1000 ms",
                    "not refused"
                    if r["refused_after_ms"] is None
                    else f"{r['refused_after_ms']:.1f} ms",
                ]
            )
    if not rows:
        return []
    return [
        "## Targets: per-check costs and the designs between the extremes",
        "",
        table(["target", "wanted", "measured"], rows),
    ]


def capacity_projection(summary: Summary) -> list[str]:
    header = ["mode", "req/s", "service cores", "session-store ops/s", "session-store cores"]
    rows: list[list[object]] = [
        [
            r["mode"],
            r["rps"],
            r["service_cores"],
            r["session_store_ops_per_s"],
            r["session_store_cores"],
        ]
        for r in capacity(summary)
    ]
    return [
        "## Capacity projection",
        "",
        "Assumptions: cost per request stays what was measured here (linear scaling, same request mix, "
        "same hardware); service cores = rate x CPU us per request summed over gateway, auth and orders; "
        "session-store ops/s = rate x measured ops per request; session-store cores = rate x the store's "
        "CPU us per request. One Redis process uses one core for commands, so beyond about one core of "
        "store work the session store must be sharded or replicated.",
        "",
        table(header, rows),
    ]
