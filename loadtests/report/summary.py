"""The figures the report shows: each mode's medians over rounds, and the capacity projection."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, TypedDict

from loadtests.bench.results import PerName, Phase
from loadtests.modes import MODES

SERVICES = ("gateway", "auth", "orders")
STORES = ("session_store", "data_store")
RATES = (10_000, 100_000, 1_000_000)

Figure = Literal[
    "rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "failures",
    "requests",
    "gateway_rps",
    "locust_cpu_fraction",
]
Group = Literal[
    "cpu_us_per_request",
    "auth_checks_per_request",
    "auth_check_us",
    "store_ops_per_request",
    "store_usec_per_call",
    "store_cpu_us_per_request",
    "session_cache_per_request",
    "token_exchanges_per_request",
]


class ModeSummary(TypedDict):
    """One mode's phases, each figure the median over its rounds (NaN where none has it)."""

    runs: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    failures: float
    requests: float
    gateway_rps: float
    locust_cpu_fraction: float
    locust_saturated: bool  # in any round
    cpu_us_per_request: PerName
    auth_checks_per_request: PerName
    auth_check_us: PerName
    store_ops_per_request: PerName
    store_usec_per_call: PerName
    store_cpu_us_per_request: PerName
    session_cache_per_request: PerName  # by result: hit, miss (empty: no cache, or an older run)
    token_exchanges_per_request: PerName  # by result: hit, miss (empty: an older run)
    service_cpu_us: float  # cpu_us_per_request summed over the services


class CapacityRow(TypedDict):
    mode: str
    rps: int
    service_cores: float
    session_store_ops_per_s: int
    session_store_cores: float


def mode_order(name: str) -> tuple[int, str]:
    """Sort key: the modes' table order; names it does not know (older runs) after, by name."""
    names = [m.name for m in MODES]
    return (names.index(name) if name in names else len(names), name)


def _median(values: Iterable[float | None]) -> float:
    items = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(items) if items else float("nan")


def _summarise_mode(runs: Sequence[Phase]) -> ModeSummary:
    def median(figure: Figure) -> float:
        return _median(r[figure] for r in runs)

    def by_name(group: Group) -> PerName:
        # Older runs lack the newer groups: they give no figure rather than an error.
        found: list[PerName] = [r.get(group) or {} for r in runs]
        names = sorted({n for f in found for n in f})
        return {n: _median(f.get(n, float("nan")) for f in found) for n in names}

    cpu = by_name("cpu_us_per_request")
    return {
        "runs": len(runs),
        "rps": median("rps"),
        "p50_ms": median("p50_ms"),
        "p95_ms": median("p95_ms"),
        "p99_ms": median("p99_ms"),
        "failures": median("failures"),
        "requests": median("requests"),
        "gateway_rps": median("gateway_rps"),
        "locust_cpu_fraction": median("locust_cpu_fraction"),
        "locust_saturated": any(r.get("locust_saturated") for r in runs),
        "cpu_us_per_request": cpu,
        "auth_checks_per_request": by_name("auth_checks_per_request"),
        "auth_check_us": by_name("auth_check_us"),
        "store_ops_per_request": by_name("store_ops_per_request"),
        "store_usec_per_call": by_name("store_usec_per_call"),
        "store_cpu_us_per_request": by_name("store_cpu_us_per_request"),
        "session_cache_per_request": by_name("session_cache_per_request"),
        "token_exchanges_per_request": by_name("token_exchanges_per_request"),
        "service_cpu_us": sum(cpu.get(s, 0.0) for s in SERVICES),
    }


def summarise(phases: Sequence[Phase]) -> dict[str, ModeSummary]:
    """Median over rounds of each mode's figures, by mode name, in the modes' table order."""
    out: dict[str, ModeSummary] = {}
    for mode in MODES:
        runs = [p for p in phases if p["mode"] == mode.name]
        if runs:
            out[mode.name] = _summarise_mode(runs)
    return out


def capacity(summary: Mapping[str, ModeSummary]) -> list[CapacityRow]:
    """What each mode would need at each of RATES, if cost per request stayed as measured."""
    rows: list[CapacityRow] = []
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
