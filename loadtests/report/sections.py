"""report.md, section by section: the prose around each table says how its figures were taken."""

from __future__ import annotations

from collections.abc import Mapping

from loadtests.bench.results import BenchResults
from loadtests.modes import MODES
from loadtests.report.summary import SERVICES, ModeSummary, capacity
from loadtests.report.tables import revocation_cell, seed_table, statuses_text, table

Summary = Mapping[str, ModeSummary]


def _idle_text(results: BenchResults) -> str:
    idle = results.get("idle_cpu_ms_per_s") or {}
    return ", ".join(f"{k} {v:.1f} ms/s" for k, v in sorted(idle.items())) or "not measured"


def introduction(results: BenchResults) -> list[str]:
    load = results["load"]
    parts = [
        "# authscale: sessions vs JWT, measured",
        "",
        f"Run {results['started']} to {results.get('finished', '?')} on {results['machine']['cpus']} CPUs, "
        f"Python {results['machine']['python']}. Each phase: {load['users']} Locust users offering "
        f"{load['user_rps']} req/s each, {load['warmup_s']} s warm-up outside the window, {load['duration_s']} s "
        f"measured; {load['rounds']} interleaved round(s); figures are medians over rounds. "
        "Server-side costs come from each service's `/metrics` (process CPU, requests, auth checks) and "
        "Redis `INFO commandstats`/`cpu`, normalised by the requests the gateway answered in the window; "
        "CPU figures have each process's idle CPU (measured in the same run with no traffic: "
        f"{_idle_text(results)}) taken out. Services run with LOG_LEVEL=WARNING (no access log) "
        "and the data store fsyncs every write (appendfsync always), which is most of a POST's latency.",
        "",
    ]
    if results.get("target"):
        parts += [
            f"Target: `{results['target']}` (a running stack): server-side figures come from the "
            "gateway's `/metrics` only, and the store experiments need the local stack.",
            "",
        ]
    return parts


def phases(summary: Summary) -> list[str]:
    header = [
        "mode",
        "req/s (Locust)",
        "req/s (gateway /metrics)",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "failures",
        "Locust CPU",
        "limit",
    ]
    rows: list[list[object]] = [
        [
            m,
            s["rps"],
            s["gateway_rps"],
            s["p50_ms"],
            s["p95_ms"],
            s["p99_ms"],
            s["failures"],
            f"{s['locust_cpu_fraction']:.0%}",
            "Locust saturated" if s["locust_saturated"] else "system",
        ]
        for m, s in _in_order(summary)
    ]
    return ["## Phases", "", table(header, rows)]


def costs(summary: Summary) -> list[str]:
    header = [
        "mode",
        *[f"{s} CPU us" for s in SERVICES],
        "session store CPU us",
        "data store CPU us",
        "session-store ops",
        "data-store ops",
    ]
    rows: list[list[object]] = [
        [
            m,
            *[s["cpu_us_per_request"].get(service) for service in SERVICES],
            s["store_cpu_us_per_request"].get("session_store"),
            s["store_cpu_us_per_request"].get("data_store"),
            s["store_ops_per_request"].get("session_store"),
            s["store_ops_per_request"].get("data_store"),
        ]
        for m, s in _in_order(summary)
    ]
    return ["## CPU per request and store operations per request", "", table(header, rows)]


def fan_out(summary: Summary) -> list[str]:
    header = ["mode", *[f"{s} checks/req" for s in SERVICES], *[f"{s} us/check" for s in SERVICES]]
    rows: list[list[object]] = [
        [
            m,
            *[s["auth_checks_per_request"].get(service) for service in SERVICES],
            *[s["auth_check_us"].get(service) for service in SERVICES],
        ]
        for m, s in _in_order(summary)
    ]
    return [
        "## Fan-out: verifications per request and what each hop pays",
        "",
        "The gateway verifies at the edge, orders verifies again, and creating an order makes orders "
        "call auth with the caller's credential, which auth verifies a third time.",
        "",
        table(header, rows),
    ]


def distance(results: BenchResults) -> list[str]:
    runs = results.get("distance") or []
    if not runs:
        return []
    header = [
        "mode",
        "added RTT ms",
        "measured store RTT ms",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "failures",
    ]
    rows: list[list[object]] = [
        [
            d["mode"],
            d["added_rtt_ms"],
            d["measured_store_rtt_ms"],
            d["rps"],
            d["p50_ms"],
            d["p95_ms"],
            d["p99_ms"],
            d["failures"],
        ]
        for d in sorted(runs, key=lambda d: (d["mode"], d["added_rtt_ms"]))
    ]
    return [
        "## Distance to the session store",
        "",
        "The services reach the session store through a TCP proxy that adds the given round trip.",
        "",
        table(header, rows),
    ]


def revocation(results: BenchResults) -> list[str]:
    rows: list[list[object]] = [
        [r["mode"], r.get("jwt_revocation", "?"), revocation_cell(results, r["mode"]), r["polls"]]
        for r in results.get("revocation", [])
    ]
    return [
        "## Revocation latency",
        "",
        "Log out, then poll `GET /orders` through the gateway with the old credential.",
        "",
        table(["mode", "JWT_REVOCATION", "result", "polls"], rows),
    ]


def outage(results: BenchResults) -> list[str]:
    found = results.get("outage")
    if not found:
        return []
    rows: list[list[object]] = [
        [state, mode, statuses_text(answer["statuses"]), answer["max_ms"]]
        for state, probes in (("stalled", found["stalled"]), ("down", found["down"]))
        for mode, answer in probes.items()
    ]
    return [
        "## Session store outage",
        "",
        "`DEBUG SLEEP 2` (stalled), then the process stopped (down).",
        "",
        table(["store", "request", "answers", "slowest ms"], rows),
    ]


def login(results: BenchResults) -> list[str]:
    found = results.get("login")
    if not found:
        return []
    rows: list[list[object]] = [
        [m, v["p50_ms"], v["auth_cpu_ms_per_login"]] for m, v in found.items()
    ]
    return [
        "## Login cost",
        "",
        table(["login", "p50 ms end to end", "auth CPU ms per login"], rows),
        "",
        "Both logins verify an argon2id hash first, which dominates; the primitives below "
        "isolate RS256 signing from creating a session.",
    ]


def credential_size(results: BenchResults) -> list[str]:
    size = results.get("credential_size")
    if not size:
        return []
    rows: list[list[object]] = [
        [m, v["safe_request_bytes"], v["unsafe_request_bytes"]] for m, v in size.items()
    ]
    return [
        "## Credential size on the wire",
        "",
        table(["mode", "GET request bytes", "POST request bytes"], rows),
    ]


def primitives(results: BenchResults) -> list[str]:
    micro = results.get("microbench") or []
    if not micro:
        return []
    rows: list[list[object]] = [
        [r["name"], r["wall_us"], r["cpu_us"], r.get("baseline") or ""] for r in micro
    ]
    return [
        "## Primitives (one process, one run)",
        "",
        table(["call", "wall us", "CPU us", "compared with"], rows),
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


def render(results: BenchResults, summary: Summary, plots: list[str]) -> str:
    """The whole report.md: the sections a run has, each after a blank line."""
    parts = [
        *introduction(results),
        "## The blog table, measured",
        "",
        seed_table(results, summary),
        "",
    ]
    sections = [
        phases(summary),
        costs(summary),
        fan_out(summary),
        distance(results),
        revocation(results),
        outage(results),
        login(results),
        credential_size(results),
        primitives(results),
        capacity_projection(summary),
        ["## Plots", "", *[f"- `{name}`" for name in plots]],
    ]
    for index, section in enumerate(s for s in sections if s):
        parts += [*([""] if index else []), *section]
    return "\n".join([*parts, ""])


def _in_order(summary: Summary) -> list[tuple[str, ModeSummary]]:
    return [(m.name, summary[m.name]) for m in MODES if m.name in summary]
