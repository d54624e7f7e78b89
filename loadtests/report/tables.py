"""Markdown tables: cell formatting, and the blog table (one claim per row, one mode per column).

Cells say "n/a" where the run did not measure a figure, and "-" where it does not apply to the
design (a JWT has no session cache; only the hybrid exchanges tokens).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from loadtests.bench.results import BenchResults, CredentialSize, Probe, Revocation
from loadtests.modes import JWT_PUSH, MODES, Mode
from loadtests.report.summary import SERVICES, ModeSummary

# The microbench rows that isolate each login's own work, by credential.
SIGN = "login: RS256 sign (PyJWT encode)"
LOGIN_PRIMITIVE: Mapping[str, str] = {
    "session": "login: create session (SET)",
    "jwt": SIGN,
    "jwt-cookie": SIGN,
}
NOT_APPLICABLE = "-"


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


def revocation_of(results: BenchResults, mode: str) -> Revocation | None:
    return next((r for r in results.get("revocation", []) if r["mode"] == mode), None)


def revocation_hops(record: Revocation) -> dict[str, float | None]:
    """Lag by hop; runs before the six designs polled the gateway only."""
    return record.get("hops") or {"gateway": record["refused_after_ms"]}


def revocation_cell(results: BenchResults, mode: str) -> str:
    r = revocation_of(results, mode)
    if r is None:
        return "n/a"
    if r["refused_after_ms"] is None:
        return f"still accepted {r['still_accepted_after_s']:.0f} s after logout (until `exp`)"
    samples = r.get("samples")
    if samples is None:  # an older run: one sample, at the gateway
        return f"refused {r['refused_after_ms']:.0f} ms after logout"
    hops = revocation_hops(r)
    where = "at the gateway" if list(hops) == ["gateway"] else f"at all {len(hops)} hops"
    accepted = sum((r.get("accepted_after_logout") or {}).values())
    late = "none" if not accepted else f"{accepted} request{'s' if accepted > 1 else ''}"
    return (
        f"refused within {r['refused_after_ms']:.0f} ms {where}, {late} accepted after logout "
        f"(worst of {samples})"
    )


def outage_probe(probes: Mapping[str, Probe], mode: Mode) -> Probe | None:
    """This mode's probe; runs before the six designs probed session and jwt-push only, and a
    JWT's answers never depend on the session store's state, so jwt-push stands for them."""
    found = probes.get(mode.name)
    if found is None and mode.credential.kind == "jwt":
        found = probes.get(JWT_PUSH.name)
    return found


def outage_cell(results: BenchResults, mode: Mode) -> str:
    outage = results.get("outage")
    if not outage:
        return "n/a"
    parts = []
    for state, probes in (("stalled", outage["stalled"]), ("down", outage["down"])):
        answer = outage_probe(probes, mode)
        parts.append(
            f"{state}: {statuses_text(answer['statuses'])} (max {answer['max_ms']:.0f} ms)"
            if answer
            else f"{state}: n/a"
        )
    return "; ".join(parts)


def credential_cell(size: Mapping[str, CredentialSize], mode: Mode) -> str:
    entry = size.get(mode.credential.name)
    if not entry:
        return "n/a"
    cell = f"{entry['safe_request_bytes']} / {entry['unsafe_request_bytes']}"
    inside = size.get("internal")
    if mode.exchanges and inside:
        cell += f" (inside: {inside['safe_request_bytes']})"
    return cell


def cache_cell(summary: ModeSummary, mode: Mode) -> str:
    """Session look-ups answered from a verifier's memory, and the misses per request."""
    if mode.credential.kind != "session":
        return NOT_APPLICABLE
    looked_up = summary["session_cache_per_request"]
    if mode.settings["SESSION_CACHE"] != "push":
        return "0% (no cache)"
    hit, miss = looked_up.get("hit"), looked_up.get("miss", 0.0)
    if hit is None or math.isnan(hit):
        return "n/a"
    total = hit + miss
    ratio = hit / total * 100 if total else float("nan")
    return f"{fmt(ratio)}% ({fmt(miss, 3)} misses/req)"


def exchange_cell(summary: ModeSummary, mode: Mode) -> str:
    if not mode.exchanges:
        return NOT_APPLICABLE
    return fmt(summary["token_exchanges_per_request"].get("miss"), 3)


def seed_cells(
    results: BenchResults, summary: Mapping[str, ModeSummary]
) -> tuple[list[str], list[list[object]]]:
    """The blog's comparison table, every cell measured in this run: header and rows."""
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
        entry, sign = micro.get(LOGIN_PRIMITIVE[m.credential.name]), micro.get(SIGN)
        if entry is None:
            return "n/a"
        cell = fmt(entry["cpu_us"])
        if m.exchanges and sign is not None:  # the hybrid also signs, once per session (and minute)
            cell += f" + {fmt(sign['cpu_us'])} per exchange"
        return cell

    def end_to_end(m: Mode) -> str:
        cell = fmt(login[m.credential.name]["p50_ms"] if m.credential.name in login else None)
        if m.exchanges and "token-exchange" in login:
            cell += f" + {fmt(login['token-exchange']['p50_ms'])} per exchange"
        return cell

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
        "server load: CPU us per request, " + " / ".join(SERVICES),
        lambda m: " / ".join(fmt(figure(m)["cpu_us_per_request"].get(s), 0) for s in SERVICES),
    )
    row(
        "server load: session-store ops per request",
        lambda m: fmt(figure(m)["store_ops_per_request"].get("session_store"), 2),
    )
    if any(m.settings["SESSION_CACHE"] == "push" for m in modes):
        row(
            "server load: session look-ups answered from memory",
            lambda m: cache_cell(figure(m), m),
        )
    if any(m.exchanges for m in modes):
        row("server load: token exchanges per request", lambda m: exchange_cell(figure(m), m))
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
    row("login cost: end-to-end p50 ms (argon2id dominates)", end_to_end)
    return ["claim", *[m.name for m in modes]], rows


def seed_table(results: BenchResults, summary: Mapping[str, ModeSummary]) -> str:
    """The blog's comparison table as Markdown (summary.md, and the top of report.md)."""
    return table(*seed_cells(results, summary))
