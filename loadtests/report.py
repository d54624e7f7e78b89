"""Turn one bench run's results into report.md, summary.md, CSVs and PNG plots.

Pure function of the results dictionary that loadtests.bench produces (also saved as
results.json), so a report can be rebuilt, and tested, from recorded data:
`python -m loadtests.report reports/latest/results.json OUTDIR`.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MODES = ("session", "jwt-off", "jwt-push")
SERVICES = ("gateway", "auth", "orders")
STORES = ("session_store", "data_store")
RATES = (10_000, 100_000, 1_000_000)
PLOTS = (
    "throughput_latency.png",
    "cpu_per_request.png",
    "store_ops_per_request.png",
    "latency_vs_distance.png",
)


def _median(values: Iterable[float]) -> float:
    items = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(items) if items else float("nan")


def summarise(phases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Median over rounds of each mode's figures."""
    out: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        runs = [p for p in phases if p["mode"] == mode]
        if not runs:
            continue
        row: dict[str, Any] = {"runs": len(runs)}
        for key in (
            "rps",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "failures",
            "requests",
            "gateway_rps",
            "locust_cpu_fraction",
        ):
            row[key] = _median(r[key] for r in runs)
        row["locust_saturated"] = any(r.get("locust_saturated") for r in runs)
        for group in (
            "cpu_us_per_request",
            "auth_checks_per_request",
            "auth_check_us",
            "store_ops_per_request",
            "store_usec_per_call",
            "store_cpu_us_per_request",
        ):
            names = sorted({n for r in runs for n in r.get(group, {})})
            row[group] = {n: _median(r[group].get(n, float("nan")) for r in runs) for n in names}
        row["service_cpu_us"] = sum(row["cpu_us_per_request"].get(s, 0.0) for s in SERVICES)
        out[mode] = row
    return out


def capacity(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for mode, s in summary.items():
        ops = s["store_ops_per_request"].get("session_store", 0.0)
        store_cpu = s["store_cpu_us_per_request"].get("session_store", 0.0)
        for rate in RATES:
            rows.append(
                {
                    "mode": mode,
                    "rps": rate,
                    "service_cores": round(rate * s["service_cpu_us"] / 1e6, 1),
                    "session_store_ops_per_s": round(rate * ops),
                    "session_store_cores": round(rate * store_cpu / 1e6, 2),
                }
            )
    return rows


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |"
        for row in rows
    ]
    return "\n".join(lines)


def _revocation_cell(results: dict[str, Any], mode: str) -> str:
    for r in results.get("revocation", []):
        if r["mode"] == mode:
            if r["refused_after_ms"] is not None:
                return f"refused {r['refused_after_ms']:.0f} ms after logout"
            return f"still accepted {r['still_accepted_after_s']:.0f} s after logout (until `exp`)"
    return "n/a"


def _outage_cell(results: dict[str, Any], mode: str) -> str:
    outage = results.get("outage")
    if not outage:
        return "n/a"
    key = "session" if mode == "session" else "jwt-push"
    parts = []
    for state in ("stalled", "down"):
        answer = outage[state].get(key)
        if answer:
            statuses = ", ".join(f"{n}x {code}" for code, n in sorted(answer["statuses"].items()))
            parts.append(f"{state}: {statuses} (max {answer['max_ms']:.0f} ms)")
    return "; ".join(parts)


def _idle_text(results: dict[str, Any]) -> str:
    idle = results.get("idle_cpu_ms_per_s") or {}
    return ", ".join(f"{k} {v:.1f} ms/s" for k, v in sorted(idle.items())) or "not measured"


def seed_table(results: dict[str, Any], summary: dict[str, dict[str, Any]]) -> str:
    size = results.get("credential_size") or {}
    login = results.get("login") or {}
    micro = {r["name"]: r for r in results.get("microbench", [])}
    header = ["claim", *[m for m in MODES if m in summary]]
    rows: list[list[Any]] = []

    def row(label: str, cell: Any) -> None:
        rows.append([label, *[cell(m) for m in MODES if m in summary]])

    row("performance: req/s at the fixed offered load", lambda m: _fmt(summary[m]["rps"]))
    row(
        "performance: p50 / p99 latency (ms)",
        lambda m: f"{_fmt(summary[m]['p50_ms'])} / {_fmt(summary[m]['p99_ms'])}",
    )
    row(
        "server load: CPU us per request, all services",
        lambda m: _fmt(summary[m]["service_cpu_us"]),
    )
    row(
        "server load: session-store ops per request",
        lambda m: _fmt(summary[m]["store_ops_per_request"].get("session_store"), 2),
    )
    row(
        "scalability: session-store ops/s at 100k req/s",
        lambda m: _fmt(
            100_000 * summary[m]["store_ops_per_request"].get("session_store", float("nan")), 0
        ),
    )
    row("revocation: old credential after logout", lambda m: _revocation_cell(results, m))
    row("request size: credential bytes (GET / POST)", lambda m: _credential_cell(size, m))
    row(
        "store outage: answers while the session store is stalled / down",
        lambda m: _outage_cell(results, m),
    )

    def primitive(mode: str) -> str:
        name = (
            "login: create session (SET)"
            if mode == "session"
            else "login: RS256 sign (PyJWT encode)"
        )
        entry = micro.get(name)
        return _fmt(entry["cpu_us"]) if entry else "n/a"

    row("login cost: primitive CPU us (session SET vs RS256 sign)", primitive)
    row(
        "login cost: end-to-end p50 ms (argon2id dominates)",
        lambda m: _fmt(login.get("session" if m == "session" else "jwt", {}).get("p50_ms")),
    )
    return _table(header, rows)


def _credential_cell(size: dict[str, Any], mode: str) -> str:
    entry = size.get("session" if mode == "session" else "jwt")
    if not entry:
        return "n/a"
    return f"{entry['safe_request_bytes']} / {entry['unsafe_request_bytes']}"


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("")
        return
    flat = [_flatten(r) for r in rows]
    names = sorted({k for r in flat for k in r})
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(flat)


def _flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if key == "by_name":
                continue
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def plot(results: dict[str, Any], summary: dict[str, dict[str, Any]], out: Path) -> list[str]:
    modes = [m for m in MODES if m in summary]
    made = []
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(modes, [summary[m]["rps"] for m in modes], color="#4c72b0")
    left.set_title("Throughput at the fixed offered load")
    left.set_ylabel("requests/s")
    width = 0.25
    for i, key in enumerate(("p50_ms", "p95_ms", "p99_ms")):
        right.bar(
            [x + (i - 1) * width for x in range(len(modes))],
            [summary[m][key] for m in modes],
            width,
            label=key.replace("_ms", ""),
        )
    right.set_xticks(range(len(modes)), modes)
    right.set_title("Latency percentiles through the gateway")
    right.set_ylabel("ms")
    right.legend()
    fig.tight_layout()
    fig.savefig(out / PLOTS[0], dpi=110)
    plt.close(fig)
    made.append(PLOTS[0])

    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = [0.0] * len(modes)
    for part in (*SERVICES, *STORES):
        values = [
            summary[m]["cpu_us_per_request"].get(part)
            if part in SERVICES
            else summary[m]["store_cpu_us_per_request"].get(part, 0.0)
            for m in modes
        ]
        values = [0.0 if v is None or math.isnan(v) else v for v in values]
        ax.bar(modes, values, bottom=bottom, label=part.replace("_", " "))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_title("CPU per request, by process (from /metrics and Redis INFO)")
    ax.set_ylabel("CPU microseconds per request")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / PLOTS[1], dpi=110)
    plt.close(fig)
    made.append(PLOTS[1])

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, store in enumerate(STORES):
        ax.bar(
            [x + (i - 0.5) * 0.35 for x in range(len(modes))],
            [summary[m]["store_ops_per_request"].get(store, 0.0) for m in modes],
            0.35,
            label=store.replace("_", " "),
        )
    ax.set_xticks(range(len(modes)), modes)
    ax.set_title("Store operations per request (Redis INFO commandstats)")
    ax.set_ylabel("operations per request")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / PLOTS[2], dpi=110)
    plt.close(fig)
    made.append(PLOTS[2])

    distance = results.get("distance") or []
    if distance:
        fig, ax = plt.subplots(figsize=(7, 4))
        for mode in sorted({d["mode"] for d in distance}):
            runs = sorted(
                (d for d in distance if d["mode"] == mode), key=lambda d: d["added_rtt_ms"]
            )
            xs = [d["added_rtt_ms"] for d in runs]
            ax.plot(xs, [d["p50_ms"] for d in runs], marker="o", label=f"{mode} p50")
            ax.plot(
                # p95, not p99: over a short window p99 is mostly the data store's fsync on POSTs.
                xs,
                [d["p95_ms"] for d in runs],
                marker="x",
                linestyle="--",
                label=f"{mode} p95",
            )
        ax.set_title("Latency vs distance to the session store")
        ax.set_xlabel("added round trip to the session store (ms)")
        ax.set_ylabel("request latency (ms)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / PLOTS[3], dpi=110)
        plt.close(fig)
        made.append(PLOTS[3])
    return made


def render(results: dict[str, Any], summary: dict[str, dict[str, Any]], plots: list[str]) -> str:
    load = results["load"]
    modes = [m for m in MODES if m in summary]
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
        *(
            [
                f"Target: `{results['target']}` (a running stack): server-side figures come from the "
                "gateway's `/metrics` only, and the store experiments need the local stack.",
                "",
            ]
            if results.get("target")
            else []
        ),
        "## The blog table, measured",
        "",
        seed_table(results, summary),
        "",
        "## Phases",
        "",
        _table(
            [
                "mode",
                "req/s (Locust)",
                "req/s (gateway /metrics)",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "failures",
                "Locust CPU",
                "limit",
            ],
            [
                [
                    m,
                    summary[m]["rps"],
                    summary[m]["gateway_rps"],
                    summary[m]["p50_ms"],
                    summary[m]["p95_ms"],
                    summary[m]["p99_ms"],
                    summary[m]["failures"],
                    f"{summary[m]['locust_cpu_fraction']:.0%}",
                    "Locust saturated" if summary[m]["locust_saturated"] else "system",
                ]
                for m in modes
            ],
        ),
        "",
        "## CPU per request and store operations per request",
        "",
        _table(
            [
                "mode",
                *[f"{s} CPU us" for s in SERVICES],
                "session store CPU us",
                "data store CPU us",
                "session-store ops",
                "data-store ops",
            ],
            [
                [
                    m,
                    *[summary[m]["cpu_us_per_request"].get(s) for s in SERVICES],
                    summary[m]["store_cpu_us_per_request"].get("session_store"),
                    summary[m]["store_cpu_us_per_request"].get("data_store"),
                    summary[m]["store_ops_per_request"].get("session_store"),
                    summary[m]["store_ops_per_request"].get("data_store"),
                ]
                for m in modes
            ],
        ),
        "",
        "## Fan-out: verifications per request and what each hop pays",
        "",
        "The gateway verifies at the edge, orders verifies again, and creating an order makes orders "
        "call auth with the caller's credential, which auth verifies a third time.",
        "",
        _table(
            ["mode", *[f"{s} checks/req" for s in SERVICES], *[f"{s} us/check" for s in SERVICES]],
            [
                [
                    m,
                    *[summary[m]["auth_checks_per_request"].get(s) for s in SERVICES],
                    *[summary[m]["auth_check_us"].get(s) for s in SERVICES],
                ]
                for m in modes
            ],
        ),
    ]
    distance = results.get("distance") or []
    if distance:
        parts += [
            "",
            "## Distance to the session store",
            "",
            "The services reach the session store through a TCP proxy that adds the given round trip.",
            "",
            _table(
                [
                    "mode",
                    "added RTT ms",
                    "measured store RTT ms",
                    "req/s",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "failures",
                ],
                [
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
                    for d in sorted(distance, key=lambda d: (d["mode"], d["added_rtt_ms"]))
                ],
            ),
        ]
    parts += [
        "",
        "## Revocation latency",
        "",
        "Log out, then poll `GET /orders` through the gateway with the old credential.",
        "",
        _table(
            ["mode", "JWT_REVOCATION", "result", "polls"],
            [
                [
                    r["mode"],
                    r.get("jwt_revocation", "?"),
                    _revocation_cell(results, r["mode"]),
                    r["polls"],
                ]
                for r in results.get("revocation", [])
            ],
        ),
    ]
    outage = results.get("outage")
    if outage:
        rows = []
        for state in ("stalled", "down"):
            for mode, answer in outage[state].items():
                statuses = ", ".join(
                    f"{n}x {code}" for code, n in sorted(answer["statuses"].items())
                )
                rows.append([state, mode, statuses, answer["max_ms"]])
        parts += [
            "",
            "## Session store outage",
            "",
            "`DEBUG SLEEP 2` (stalled), then the process stopped (down).",
            "",
            _table(["store", "request", "answers", "slowest ms"], rows),
        ]
    login = results.get("login")
    if login:
        parts += [
            "",
            "## Login cost",
            "",
            _table(
                ["login", "p50 ms end to end", "auth CPU ms per login"],
                [[m, v["p50_ms"], v["auth_cpu_ms_per_login"]] for m, v in login.items()],
            ),
            "",
            "Both logins verify an argon2id hash first, which dominates; the primitives below "
            "isolate RS256 signing from creating a session.",
        ]
    size = results.get("credential_size")
    if size:
        parts += [
            "",
            "## Credential size on the wire",
            "",
            _table(
                ["mode", "GET request bytes", "POST request bytes"],
                [[m, v["safe_request_bytes"], v["unsafe_request_bytes"]] for m, v in size.items()],
            ),
        ]
    micro = results.get("microbench") or []
    if micro:
        parts += [
            "",
            "## Primitives (one process, one run)",
            "",
            _table(
                ["call", "wall us", "CPU us", "compared with"],
                [[r["name"], r["wall_us"], r["cpu_us"], r.get("baseline") or ""] for r in micro],
            ),
        ]
    parts += [
        "",
        "## Capacity projection",
        "",
        "Assumptions: cost per request stays what was measured here (linear scaling, same request mix, "
        "same hardware); service cores = rate x CPU us per request summed over gateway, auth and orders; "
        "session-store ops/s = rate x measured ops per request; session-store cores = rate x the store's "
        "CPU us per request. One Redis process uses one core for commands, so beyond about one core of "
        "store work the session store must be sharded or replicated.",
        "",
        _table(
            ["mode", "req/s", "service cores", "session-store ops/s", "session-store cores"],
            [
                [
                    r["mode"],
                    r["rps"],
                    r["service_cores"],
                    r["session_store_ops_per_s"],
                    r["session_store_cores"],
                ]
                for r in capacity(summary)
            ],
        ),
        "",
        "## Plots",
        "",
        *[f"- `{name}`" for name in plots],
        "",
    ]
    return "\n".join(parts)


def write(results: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    summary = summarise(results["phases"])
    _write_csv(out / "phases.csv", results["phases"])
    _write_csv(out / "distance.csv", results.get("distance") or [])
    _write_csv(out / "revocation.csv", results.get("revocation") or [])
    _write_csv(out / "microbench.csv", results.get("microbench") or [])
    _write_csv(out / "capacity.csv", capacity(summary))
    plots = plot(results, summary, out) if summary else []
    (out / "report.md").write_text(render(results, summary, plots))
    (out / "summary.md").write_text(seed_table(results, summary) + "\n")
    return out / "report.md"


if __name__ == "__main__":
    write(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
