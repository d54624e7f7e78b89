"""report.md, section by section: the prose around each table says how its figures were taken."""

from __future__ import annotations

from collections.abc import Mapping

from loadtests.bench.results import BenchResults
from loadtests.modes import MODES
from loadtests.report.experiments import (
    credential_size,
    distance,
    failures,
    login,
    outage,
    primitives,
    revocation,
)
from loadtests.report.inside import cluster, notes, traced
from loadtests.report.summary import SERVICES, ModeSummary
from loadtests.report.tables import (
    fmt,
    seed_table,
    table,
)
from loadtests.report.targets import capacity_projection, targets

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
        traced(results),
        cluster(results),
        notes(results),
        ["## Plots", "", *[f"- `{name}`" for name in plots]],
    ]
    for index, section in enumerate(s for s in sections if s):
        parts += [*([""] if index else []), *section]
    return "\n".join([*parts, ""])


def _in_order(summary: Summary) -> list[tuple[str, ModeSummary]]:
    return [(m.name, summary[m.name]) for m in MODES if m.name in summary]
