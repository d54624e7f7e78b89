"""report.md, section by section: the prose around each table says how its figures were taken."""

from __future__ import annotations

import math
from collections.abc import Mapping

from loadtests.bench.results import BenchResults
from loadtests.modes import HYBRID, JWT_PUSH, MODES, SESSION_CACHED
from loadtests.report.summary import SERVICES, ModeSummary, capacity, mode_order
from loadtests.report.tables import (
    fmt,
    revocation_cell,
    revocation_hops,
    revocation_of,
    seed_table,
    statuses_text,
    table,
)

Summary = Mapping[str, ModeSummary]


def _idle_text(results: BenchResults) -> str:
    idle = results.get("idle_cpu_ms_per_s") or {}
    return ", ".join(f"{k} {v:.1f} ms/s" for k, v in sorted(idle.items())) or "not measured"


def introduction(results: BenchResults) -> list[str]:
    load = results["load"]
    parts = [
        "# authscale: session and JWT designs, measured",
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
    loadavg = results["machine"].get("loadavg")
    if loadavg:
        parts += [
            "Load average (1 min) of the machine when the run started and finished: "
            + " / ".join(f"{v:.1f}" for v in loadavg)
            + f" on {results['machine']['cpus']} CPUs. Anything above the bench's own share (about "
            "one core) means other processes competed for the CPUs: per-request CPU and latency are "
            "then inflated, unevenly across phases.",
            "",
        ]
    if results.get("target"):
        parts += [
            f"Target: `{results['target']}` (a running stack): server-side figures come from the "
            "gateway's `/metrics` only, and the store experiments need the local stack.",
            "",
        ]
    return parts


def designs(summary: Summary) -> list[str]:
    """What each column is: the credential the client holds and the settings measured."""
    rows: list[list[object]] = [
        [
            m.name,
            f"{m.credential.name} (`POST {m.credential.login_path}`"
            + "".join(f', "{k}": "{v}"' for k, v in m.credential.login_fields.items())
            + f"), {m.credential.carrier}",
            *[
                f"`{m.settings[k]}`"
                for k in ("JWT_REVOCATION", "SESSION_CACHE", "GATEWAY_TOKEN_EXCHANGE")
            ],
        ]
        for m in MODES
        if m.name in summary
    ]
    return [
        "## The designs",
        "",
        "Each mode is a Locust user class (loadtests/locustfile.py) and the settings every service "
        "runs with while it is measured (loadtests/modes.py). Modes with the same settings share one "
        "start of the services; the services are restarted only where the settings change.",
        "",
        table(
            [
                "mode",
                "credential, carrier",
                "JWT_REVOCATION",
                "SESSION_CACHE",
                "GATEWAY_TOKEN_EXCHANGE",
            ],
            rows,
        ),
    ]


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
        "session-cache hits",
        "session-cache misses",
        "token exchanges",
    ]
    rows: list[list[object]] = [
        [
            m,
            *[s["cpu_us_per_request"].get(service) for service in SERVICES],
            s["store_cpu_us_per_request"].get("session_store"),
            s["store_cpu_us_per_request"].get("data_store"),
            fmt(s["store_ops_per_request"].get("session_store"), 3),
            fmt(s["store_ops_per_request"].get("data_store"), 3),
            fmt(s["session_cache_per_request"].get("hit", 0.0), 3),
            fmt(s["session_cache_per_request"].get("miss", 0.0), 3),
            fmt(s["token_exchanges_per_request"].get("miss", 0.0), 3),
        ]
        for m, s in _in_order(summary)
    ]
    return [
        "## CPU per request and store operations per request",
        "",
        "Everything per request the gateway answered. Session-cache hits and misses are summed over "
        "every verifier (`session_cache_total`); token exchanges are the internal tokens the "
        'hybrid\'s gateway fetched from auth (`token_exchanges_total{result="miss"}`), the rest '
        "came from its cache.",
        "",
        table(header, rows),
    ]


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
        "call auth with the caller's credential, which auth verifies a third time. In the hybrid "
        "the gateway checks the session and everything behind it checks the internal JWT.",
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
        for d in sorted(runs, key=lambda d: (mode_order(d["mode"]), d["added_rtt_ms"]))
    ]
    return [
        "## Distance to the session store",
        "",
        "The services reach the session store through a TCP proxy that adds the given round trip. "
        "Each mode runs under its own settings (one restart per group of settings, the delays in "
        "ascending order within it), so compare a mode's rows with each other first.",
        "",
        table(header, rows),
    ]


def failures(results: BenchResults) -> list[str]:
    """What failed, phase by phase, as Locust recorded it: the system's errors under load."""
    rows: list[list[object]] = [
        [p["label"], error.replace("|", "/"), count]
        for p in [*results["phases"], *(results.get("distance") or [])]
        for error, count in sorted((p.get("errors") or {}).items())
    ]
    if not rows:
        return []
    return [
        "## Failures",
        "",
        "Requests Locust counted as failed (a 5xx, a refused connection, an unexpected status), by "
        "phase; a phase's figures above include them. The services' own warnings (which store call "
        "timed out, which upstream failed) are in `stack.log` beside this report.",
        "",
        table(["phase", "request: error", "count"], rows),
    ]


def revocation(results: BenchResults) -> list[str]:
    records = results.get("revocation", [])
    hop_names = list(dict.fromkeys(h for r in records for h in revocation_hops(r)))
    rows: list[list[object]] = []
    for name in [m.name for m in MODES] + [r["mode"] for r in records]:
        r = revocation_of(results, name)
        if r is None or any(row[0] == name for row in rows):
            continue
        hops = revocation_hops(r)
        rows.append(
            [
                name,
                r.get("jwt_revocation", "?"),
                r.get("samples", 1),
                revocation_cell(results, name),
                fmt(r.get("p50_ms", r["refused_after_ms"]), 1),
                *[
                    ("not refused" if hops[h] is None else fmt(hops[h], 1)) if h in hops else "-"
                    for h in hop_names
                ],
                sum(r["accepted_after_logout"].values()) if "accepted_after_logout" in r else "n/a",
                r["polls"],
            ]
        )
    return [
        "## Revocation latency",
        "",
        "Log in, use the credential once at every hop (so every cache holds it), log out through "
        "the gateway, then poll every hop with the old credential until each refuses it: "
        "the gateway (`GET /orders`) and, on the bench's own stack, each service on its own address "
        "(`GET /me` at auth, `GET /orders` at each orders replica) with the credential that service "
        "sees (for the hybrid: an internal token minted for the session), every hop polled at once "
        "by a thread of its own. Samples are taken after each of the mode's phases; figures are ms "
        "from the logout's answer to the answer of the first 401, the slowest over the samples (p50: "
        "the median sample's slowest hop), so they include one request's own latency; \"accepted "
        'after logout" counts the requests answered 200 after the logout was (over all samples '
        "and hops): 0 means every hop refused the credential at its first poll.",
        "",
        table(
            [
                "mode",
                "JWT_REVOCATION",
                "samples",
                "result",
                "p50 ms",
                *[f"{h} worst ms" for h in hop_names],
                "accepted after logout",
                "polls",
            ],
            rows,
        ),
    ]


def outage(results: BenchResults) -> list[str]:
    found = results.get("outage")
    if not found:
        return []
    rows: list[list[object]] = [
        [state, mode, statuses_text(probes[mode]["statuses"]), probes[mode]["max_ms"]]
        for state, probes in (("stalled", found["stalled"]), ("down", found["down"]))
        for mode in sorted(probes, key=mode_order)
    ]
    return [
        "## Session store outage",
        "",
        "`DEBUG SLEEP 2` (stalled), then the process stopped (down), then started again (empty). "
        "Each mode is probed under its own settings, after the last phase of its group, with a "
        "credential used a few times first, so that caches hold it: `GET /orders` through the "
        "gateway, 3 times while stalled and 5 times while down; a login is tried once while down. "
        "A status 0 means no answer within 5 s.",
        "",
        table(["store", "request", "answers", "slowest ms"], rows),
    ]


def _used_by(credential: str) -> str:
    if credential == "token-exchange":
        return HYBRID.name + " (once per session, then about once a minute)"
    if credential == "internal":
        return HYBRID.name + " (behind the gateway)"
    return ", ".join(m.name for m in MODES if m.credential.name == credential) or "?"


def login(results: BenchResults) -> list[str]:
    found = results.get("login")
    if not found:
        return []
    rows: list[list[object]] = [
        [m, _used_by(m), v["p50_ms"], v["auth_cpu_ms_per_login"]] for m, v in found.items()
    ]
    return [
        "## Login cost",
        "",
        table(["login", "designs", "p50 ms end to end", "auth CPU ms per login"], rows),
        "",
        "Every login verifies an argon2id hash first, which dominates; the primitives below "
        "isolate RS256 signing from creating a session. `token-exchange` is the hybrid's extra: "
        "auth minting an internal token for a session (called on auth's own address).",
    ]


def credential_size(results: BenchResults) -> list[str]:
    size = results.get("credential_size")
    if not size:
        return []
    rows: list[list[object]] = [
        [m, _used_by(m), v["safe_request_bytes"], v["unsafe_request_bytes"]]
        for m, v in size.items()
    ]
    return [
        "## Credential size on the wire",
        "",
        "Bytes of the header lines that carry the credential to `/orders` (a cookie carrier's "
        "POST adds `X-CSRF-Token`; the JWT cookie's `rt` goes to `/auth/refresh` only).",
        "",
        table(["credential", "designs", "GET request bytes", "POST request bytes"], rows),
    ]


def _us(value: float) -> str:
    return fmt(value, 2 if value < 10 else 1)


def primitives(results: BenchResults) -> list[str]:
    micro = results.get("microbench") or []
    if not micro:
        return []
    rows: list[list[object]] = [
        [r["name"], _us(r["wall_us"]), _us(r["cpu_us"]), r.get("baseline") or ""] for r in micro
    ]
    return [
        "## Primitives (one process, one run)",
        "",
        table(["call", "wall us", "CPU us", "compared with"], rows),
    ]


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
        "## Targets for the designs between the extremes",
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
        designs(summary),
        phases(summary),
        costs(summary),
        fan_out(summary),
        distance(results),
        failures(results),
        revocation(results),
        outage(results),
        login(results),
        credential_size(results),
        primitives(results),
        targets(results, summary),
        capacity_projection(summary),
        ["## Plots", "", *[f"- `{name}`" for name in plots]],
    ]
    for index, section in enumerate(s for s in sections if s):
        parts += [*([""] if index else []), *section]
    return "\n".join([*parts, ""])


def _in_order(summary: Summary) -> list[tuple[str, ModeSummary]]:
    return [(m.name, summary[m.name]) for m in MODES if m.name in summary]
