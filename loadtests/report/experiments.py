"""report.md's sections on the experiments between the phases: store distance, failures,
revocation, the store outage, logins, credential sizes, and the primitives' micro-benchmark."""

from __future__ import annotations

from collections.abc import Sequence

from loadtests.bench.results import BenchResults, MicrobenchRow
from loadtests.modes import HYBRID, MODES
from loadtests.report.summary import mode_order
from loadtests.report.tables import (
    fmt,
    revocation_cell,
    revocation_hops,
    revocation_of,
    statuses_text,
    table,
)


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
        [
            r["name"],
            _us(r["wall_us"]),
            _us(r["cpu_us"]),
            r.get("baseline") or "",
            micro_ratio(micro, r),
        ]
        for r in micro
    ]
    return [
        "## Primitives (one process, one run)",
        "",
        table(["call", "wall us", "CPU us", "compared with", "ratio"], rows),
        "",
        "A paired ratio was measured in alternating blocks with its baseline (the median of the "
        "rounds' ratios): the session check and the bare GET both wait for redis-server, which "
        "shares the cores, so a drift in the machine's speed between two separate blocks would "
        "move their ratio by more than the difference being measured. Where valgrind is "
        "installed the pair is also counted in user-space instructions per call "
        "(loadtests/instructions.py), which do not move with the machine's load; the system "
        "calls, the same for both, are left out, so that ratio is an upper bound of the CPU "
        "ratio.",
    ]


def micro_ratio(micro: Sequence[MicrobenchRow], row: MicrobenchRow) -> str:
    """`row` against its baseline: the paired figures where measured so, else wall over wall."""
    base = next((r for r in micro if r["name"] == row.get("baseline")), None)
    if base is None or not base["wall_us"]:
        return ""
    if "ratio_wall" in row:
        cpu = row.get("ratio_cpu", float("nan"))
        text = f"{row['ratio_wall']:.2f}x wall, {cpu:.2f}x CPU (paired)"
    else:
        text = f"{row['wall_us'] / base['wall_us']:.2f}x wall"
    if row.get("instructions") and base.get("instructions"):
        text += f", {row['instructions'] / base['instructions']:.2f}x instructions"
    return text
