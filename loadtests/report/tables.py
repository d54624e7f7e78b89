"""Markdown tables: cell formatting, and the blog table (one claim per row, one mode per column)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from loadtests.bench.results import BenchResults, CredentialSize
from loadtests.modes import MODES, STANDS_FOR, Credential, Mode
from loadtests.report.summary import ModeSummary

# The microbench rows that isolate each kind of login's own work.
LOGIN_PRIMITIVE: Mapping[Credential, str] = {
    "session": "login: create session (SET)",
    "jwt": "login: RS256 sign (PyJWT encode)",
}


def fmt(value: object, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; strings go in as they are, anything else through fmt()."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in row) + " |"
        for row in rows
    ]
    return "\n".join(lines)


def statuses_text(statuses: Mapping[str, int]) -> str:
    return ", ".join(f"{n}x {code}" for code, n in sorted(statuses.items()))


def revocation_cell(results: BenchResults, mode: str) -> str:
    for r in results.get("revocation", []):
        if r["mode"] == mode:
            if r["refused_after_ms"] is not None:
                return f"refused {r['refused_after_ms']:.0f} ms after logout"
            return f"still accepted {r['still_accepted_after_s']:.0f} s after logout (until `exp`)"
    return "n/a"


def outage_cell(results: BenchResults, mode: Mode) -> str:
    outage = results.get("outage")
    if not outage:
        return "n/a"
    key = STANDS_FOR[mode.credential].name
    parts = []
    for state, probes in (("stalled", outage["stalled"]), ("down", outage["down"])):
        answer = probes.get(key)
        if answer:
            parts.append(
                f"{state}: {statuses_text(answer['statuses'])} (max {answer['max_ms']:.0f} ms)"
            )
    return "; ".join(parts)


def credential_cell(size: Mapping[str, CredentialSize], mode: Mode) -> str:
    entry = size.get(mode.credential)
    if not entry:
        return "n/a"
    return f"{entry['safe_request_bytes']} / {entry['unsafe_request_bytes']}"


def seed_table(results: BenchResults, summary: Mapping[str, ModeSummary]) -> str:
    """The blog's comparison table, every cell measured in this run."""
    size = results.get("credential_size") or {}
    login = results.get("login") or {}
    micro = {r["name"]: r for r in results.get("microbench", [])}
    modes = [m for m in MODES if m.name in summary]
    rows: list[list[object]] = []

    def row(label: str, cell: Callable[[Mode], str]) -> None:
        rows.append([label, *[cell(m) for m in modes]])

    def figure(m: Mode) -> ModeSummary:
        return summary[m.name]

    def primitive(m: Mode) -> str:
        entry = micro.get(LOGIN_PRIMITIVE[m.credential])
        return fmt(entry["cpu_us"]) if entry else "n/a"

    row("performance: req/s at the fixed offered load", lambda m: fmt(figure(m)["rps"]))
    row(
        "performance: p50 / p99 latency (ms)",
        lambda m: f"{fmt(figure(m)['p50_ms'])} / {fmt(figure(m)['p99_ms'])}",
    )
    row(
        "server load: CPU us per request, all services",
        lambda m: fmt(figure(m)["service_cpu_us"]),
    )
    row(
        "server load: session-store ops per request",
        lambda m: fmt(figure(m)["store_ops_per_request"].get("session_store"), 2),
    )
    row(
        "scalability: session-store ops/s at 100k req/s",
        lambda m: fmt(
            100_000 * figure(m)["store_ops_per_request"].get("session_store", float("nan")), 0
        ),
    )
    row("revocation: old credential after logout", lambda m: revocation_cell(results, m.name))
    row("request size: credential bytes (GET / POST)", lambda m: credential_cell(size, m))
    row(
        "store outage: answers while the session store is stalled / down",
        lambda m: outage_cell(results, m),
    )
    row("login cost: primitive CPU us (session SET vs RS256 sign)", primitive)
    row(
        "login cost: end-to-end p50 ms (argon2id dominates)",
        lambda m: fmt(login[m.credential]["p50_ms"] if m.credential in login else None),
    )
    return table(["claim", *[m.name for m in modes]], rows)
