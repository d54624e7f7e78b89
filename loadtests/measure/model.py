"""The bottom-up model (DESIGN.md, "The model"): each design's CPU per request and p50 latency
predicted from parts measured apart, and its error on every measured chain and distance point.

The parts:
- forwarding: the control chain's lines (no credential checked anywhere), CPU and p50 against
  the hops: a base and a cost per hop. It is the one part fitted to points it is then shown
  against (its own), since it is the forwarding by definition;
- checks: at k hops the gateway checks at the edge and k relays check behind it. Each check
  costs the design's in-process micro-benchmark figure (`check_us`). The hybrid's gateway checks
  the session and its relays an internal JWT: its edge check is the figure of the design that
  checks a session the same way (same SESSION_CACHE), its relays' that of the bearer JWT
  design with the same revocation; the control checks nowhere;
- the session store: its CPU per operation (cpu_by_process["session_store"] over the store
  operations per request, in windows outside the chain and distance phases) times the
  operations each point counted (a count from the store, not a fitted cost);
- store distance: every store operation is a round trip the request waits for, one after
  the other, so it adds ops x RTT (the base RTT: the distance points with nothing added) to
  the latency, and the checks' CPU adds to it in series.

    CPU(k) = base + per_hop * k + edge_check + k * relay_check + ops * store_cpu_per_op
    p50(k) = base_p50 + per_hop_p50 * k + (edge_check + k * relay_check) / 1000 + ops * RTT

Nothing is tuned to the design's own points: where its in-process check misses what the chain
costs, the error shows it. Pure: no I/O, no clock.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from loadtests import modes
from loadtests.measure import stats
from loadtests.measure.schema import CONTROL, ModelError, ModelPoint, Window

GOAL_PCT = {"cpu": 15.0, "p50": 20.0}  # DESIGN.md: validated within these on every point
STORE_PROCESS = "session_store"  # the key of cpu_by_process the session store's CPU is under
# A window with fewer store operations per request says little of one operation's cost.
STORE_OPS_FLOOR = 0.5
DEFAULT_DISTANCE_HOPS = 1  # when the method does not say where the distance points ran
MODELLED_PHASES = ("chain", "distance")  # the points the model is validated on


def usable(windows: Iterable[Window], phase: str, design: str | None = None) -> list[Window]:
    """The windows of one phase (and design) that count: not limited by the load generator."""
    return [
        w
        for w in windows
        if w["phase"] == phase
        and (design is None or w["design"] == design)
        and not w.get("generator_limited", False)
    ]


def chain_fit(
    windows: Iterable[Window], design: str, figure: str = "cpu_us_per_request"
) -> stats.Fit | None:
    """The design's `figure` against the hops over its chain windows (every repeat); None
    when they do not span two hop counts."""
    points = [
        (float(fields["hops"]), float(fields[figure]))
        for fields in cast(list[Mapping[str, Any]], usable(windows, "chain", design))
        if fields.get("hops") is not None and fields.get(figure) is not None
    ]
    if len({x for x, _ in points}) < 2:
        return None
    return stats.fit([x for x, _ in points], [y for _, y in points])


@dataclass(frozen=True, slots=True)
class Checks:
    """The CPU of one request's checks at k hops: edge_us + k * relay_us."""

    edge_us: float
    edge_from: str
    relay_us: float
    relay_from: str

    def at(self, hops: float) -> float:
        return self.edge_us + hops * self.relay_us


@dataclass
class Output:
    parts: dict[str, Any]
    points: list[ModelPoint] = field(default_factory=list)
    errors: dict[str, ModelError] = field(default_factory=dict)  # per design
    notes: list[str] = field(default_factory=list)


def _check_us(designs: Mapping[str, Mapping[str, Any]], name: str) -> float | None:
    value = designs.get(name, {}).get("check_us")
    return None if value is None else float(value)


def _sibling(mode: modes.Mode, edge: bool) -> str | None:
    """The design whose check a hybrid's edge (a session) or relay (an internal JWT) runs."""
    for other in modes.MODES:
        if other.exchanges:
            continue
        if edge:
            same = other.credential.kind == "session" and (
                other.settings[modes.CACHE] == mode.settings[modes.CACHE]
            )
        else:
            same = (
                other.credential.kind == "jwt"
                and other.credential.carrier == "header"
                and other.revocation == mode.revocation
            )
        if same:
            return other.name
    return None


def checks(designs: Mapping[str, Mapping[str, Any]], name: str) -> Checks | None:
    """What a request's checks cost in the design, from the micro-benchmark; None when the
    figure it needs was not measured."""
    if name == CONTROL:
        return Checks(0.0, "no check", 0.0, "no check")
    own = _check_us(designs, name)
    mode = modes.BY_NAME.get(name)
    if mode is None or not mode.exchanges:
        return None if own is None else Checks(own, name, own, name)
    found: list[tuple[float, str]] = []
    for edge in (True, False):
        sibling = _sibling(mode, edge)
        value = None if sibling is None else _check_us(designs, sibling)
        if value is not None and sibling is not None:
            found.append((value, sibling))
        elif own is not None:
            found.append((own, name))
        else:
            return None
    (edge_us, edge_from), (relay_us, relay_from) = found
    return Checks(edge_us, edge_from, relay_us, relay_from)


def _store_cpu_per_op(windows: Sequence[Window]) -> tuple[float, str, int]:
    """The session store's CPU per operation: the median over the windows outside the
    validated phases that made enough operations to tell."""
    per_op = [
        w["cpu_by_process"][STORE_PROCESS] / w["store_ops_per_request"]
        for w in windows
        if w["phase"] not in (*MODELLED_PHASES, "idle")
        and not w.get("generator_limited", False)
        and w["store_ops_per_request"] >= STORE_OPS_FLOOR
        and STORE_PROCESS in w.get("cpu_by_process", {})
    ]
    if not per_op:
        return 0.0, "not measured outside the chain and distance phases: taken as 0", 0
    phases = sorted({w["phase"] for w in windows if w["phase"] not in (*MODELLED_PHASES, "idle")})
    return statistics.median(per_op), f"median over {'/'.join(phases)} windows", len(per_op)


def _base_rtt(
    designs: Mapping[str, Mapping[str, Any]], method: Mapping[str, Any]
) -> tuple[float, str]:
    nearest = [
        float(p["measured_rtt_ms"])
        for design in designs.values()
        for p in design.get("distance") or []
        if float(p.get("added_rtt_ms", 0.0)) == 0.0 and "measured_rtt_ms" in p
    ]
    if nearest:
        return statistics.median(nearest), "distance points with no delay added (median)"
    if "store_rtt_ms" in method:
        return float(method["store_rtt_ms"]), "method.store_rtt_ms"
    return 0.0, "not measured: taken as 0"


def _error_pct(model: float, measured: float) -> float:
    return (model - measured) / measured * 100


def _r(value: float, digits: int = 3) -> float:
    return round(value, digits)


def build(results: Mapping[str, Any]) -> Output:
    """The parts, every point's prediction and error, and each design's largest errors."""
    designs: Mapping[str, Mapping[str, Any]] = results["designs"]
    windows: list[Window] = list(results.get("windows", []))
    method: Mapping[str, Any] = results.get("method", {})
    cpu_line = chain_fit(windows, CONTROL)
    p50_line = chain_fit(windows, CONTROL, "p50_ms")
    if cpu_line is None or p50_line is None:
        return Output(
            {}, notes=["no control chain over two hop counts: no forwarding part, no model"]
        )
    store_us, store_from, store_windows = _store_cpu_per_op(windows)
    rtt_ms, rtt_from = _base_rtt(designs, method)
    distance_hops = float(method.get("distance_hops", DEFAULT_DISTANCE_HOPS))
    out = Output(
        {
            "forwarding": {
                "cpu_base_us": _r(cpu_line.intercept, 1),
                "cpu_us_per_hop": _r(cpu_line.slope, 1),
                "cpu_us_per_hop_ci95": [_r(x, 1) for x in cpu_line.slope_ci95],
                "p50_base_ms": _r(p50_line.intercept),
                "p50_ms_per_hop": _r(p50_line.slope),
                "windows": cpu_line.n,
                "from": "the control chain's fit",
            },
            "store": {
                "cpu_us_per_op": _r(store_us, 1),
                "cpu_from": store_from,
                "windows": store_windows,
                "rtt_ms": _r(rtt_ms),
                "rtt_from": rtt_from,
            },
            "checks": {},
            "distance_hops": distance_hops,
            "goal_pct": dict(GOAL_PCT),
        }
    )
    line = _Lines(cpu_line, p50_line, store_us)
    for name, design in designs.items():
        cost = checks(designs, name)
        out.parts["checks"][name] = (
            None
            if cost is None
            else {
                "edge_us": cost.edge_us,
                "edge_from": cost.edge_from,
                "relay_us": cost.relay_us,
                "relay_from": cost.relay_from,
            }
        )
        if cost is None:
            out.notes.append(f"{name}: its check cost (check_us) was not measured: not modelled")
            continue
        measured: list[tuple[str, float, float, float, Mapping[str, Any]]] = [
            ("chain", float(key), float(key), rtt_ms, hop_point)
            for key, hop_point in design.get("hops", {}).items()
        ]
        measured.sort(key=lambda m: m[1])
        measured += [
            ("distance", float(p["added_rtt_ms"]), distance_hops, float(p["measured_rtt_ms"]), p)
            for p in design.get("distance") or []
        ]
        own: list[ModelPoint] = []
        for kind, x, hops, rtt, figures in measured:
            predicted = line.point(name, cost, kind, x, hops, rtt, figures)
            if predicted is None:
                out.notes.append(f"{name} {kind} {x:g}: no CPU or p50 measured: not modelled")
            else:
                own.append(predicted)
        out.points += own
        if own:
            out.errors[name] = {
                "cpu": _r(max(abs(p["cpu_error_pct"]) for p in own), 1),
                "p50": _r(max(abs(p["p50_error_pct"]) for p in own), 1),
            }
    return out


@dataclass(frozen=True, slots=True)
class _Lines:
    """The parts every design shares: forwarding (CPU and p50) and the store's CPU per op."""

    cpu: stats.Fit
    p50: stats.Fit
    store_us_per_op: float

    def point(
        self,
        design: str,
        cost: Checks,
        kind: str,
        x: float,
        hops: float,
        rtt_ms: float,
        measured: Mapping[str, Any],
    ) -> ModelPoint | None:
        cpu_measured = float(measured.get("cpu_us_per_request") or 0.0)
        p50_measured = float(measured.get("p50_ms") or 0.0)
        if cpu_measured <= 0 or p50_measured <= 0:
            return None
        ops = float(measured.get("store_ops_per_request") or 0.0)
        cpu = self.cpu.at(hops) + cost.at(hops) + ops * self.store_us_per_op
        p50 = self.p50.at(hops) + cost.at(hops) / 1000 + ops * rtt_ms
        return {
            "design": design,
            "kind": kind,
            "x": x,
            "cpu_measured": _r(cpu_measured, 1),
            "cpu_model": _r(cpu, 1),
            "cpu_error_pct": _r(_error_pct(cpu, cpu_measured), 2),
            "p50_measured": _r(p50_measured),
            "p50_model": _r(p50),
            "p50_error_pct": _r(_error_pct(p50, p50_measured), 2),
        }
