"""Do two runs agree? `python -m loadtests.measure.agree A/results.json B/results.json`

Two runs agree on a figure where each run's median lies inside the other run's 95 % interval;
the headline figures compared are each design's capacity and CPU per request (the issue's test
of the instrument: two default runs on a quiet machine agree on every one).

Beside them, the control: the chain of k relays that check no credential, the same request in
every design, measured in both runs. Its CPU per request, run B over run A at each k, says how
fast the machine ran in B against A. Where that ratio's interval lies beyond 5 % of 1, the two
runs measured different machines (this virtual machine's speed moves by 15-20 % from one half
hour to the next), and their absolute figures cannot agree however good the method; the ratios
between designs are what to compare then.

The control chain runs minutes after the CPU-per-request windows; the gauges recorded in those
windows (gauge.GAUGES: the spinners' lap, the load generator's own CPU per request) say how
fast the machine ran during them, B over A.

Prints a Markdown table, the control's and the gauges' ratios and the verdict; exit status 0
where every figure agrees, 1 where one does not, 2 where the files cannot be compared.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.measure import gauge, stats
from loadtests.measure.analysis import FIGURES as HEADLINE
from loadtests.measure.analysis import analyse
from loadtests.measure.schema import CONTROL, HOPS, load

FIGURES = tuple(HEADLINE)  # the headline figures two runs must share
# Machines closer than this are the same machine for the comparison: a figure's own interval is
# about this wide, and a difference inside it explains no disagreement.
SPEED_TOLERANCE = 0.05


@dataclass(frozen=True, slots=True)
class Agreement:
    design: str
    figure: str
    a: tuple[float, float, float]  # median, ci95 lo, hi
    b: tuple[float, float, float]
    judged: bool = True  # both figures have an interval (more than one run each)

    @property
    def a_in_b(self) -> bool:
        return self.b[1] <= self.a[0] <= self.b[2]

    @property
    def b_in_a(self) -> bool:
        return self.a[1] <= self.b[0] <= self.a[2]

    @property
    def agree(self) -> bool:
        return self.judged and self.a_in_b and self.b_in_a


def _triple(figure: Mapping[str, Any]) -> tuple[float, float, float]:
    lo, hi = figure["ci95"]
    return float(figure["median"]), float(lo), float(hi)


def _rates_differ(x: Mapping[str, Any], y: Mapping[str, Any]) -> bool:
    """Two figures measured at different offered rates (CPU per request's `offered_rps`: the
    common rate, lowered on a slow machine, plan.common_rate): what a request costs depends on
    the rate it is offered at, so they are not the same figure."""
    return x.get("offered_rps") != y.get("offered_rps")


def agreements(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Agreement]:
    """Every design both runs measured, each headline figure both have at the same rate, in A's
    order; a figure of one run (a --quick run's) has no interval, so it is shown and never
    agrees."""
    out: list[Agreement] = []
    for name, mine in a["designs"].items():
        theirs = b["designs"].get(name)
        if name == CONTROL or not theirs:
            continue
        for figure in FIGURES:
            x, y = mine.get(figure), theirs.get(figure)
            if x and y and x.get("ci95") and y.get("ci95") and not _rates_differ(x, y):
                judged = stats.has_interval(x) and stats.has_interval(y)
                out.append(Agreement(name, figure, _triple(x), _triple(y), judged))
    return out


def unmatched(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The design figures one run has and the other has not, or has at another rate: they
    cannot agree."""
    found = {(r.design, r.figure) for r in agreements(a, b)}
    out = []
    for one, other, label in ((a, b, "only in A"), (b, a, "only in B")):
        for name, design in one["designs"].items():
            for figure in FIGURES:
                x, y = design.get(figure), other["designs"].get(name, {}).get(figure)
                if name == CONTROL or not x or (name, figure) in found:
                    continue
                if not y:
                    out.append(f"{name} {figure} ({label})")
                elif one is a:  # in both: said once
                    ra, rb = (
                        "no rate" if r is None else f"{r:g} req/s"
                        for r in (x.get("offered_rps"), y.get("offered_rps"))
                    )
                    out.append(
                        f"{name} {figure} (at {ra} in A, {rb} in B)"
                        if _rates_differ(x, y)
                        else f"{name} {figure} (no interval)"
                    )
    return out


@dataclass(frozen=True, slots=True)
class Speed:
    """The control chain's CPU per request, B over A: the geometric mean of the ratios at each
    k both runs measured, with the t interval of their logarithms."""

    ratio: float
    ci95: tuple[float, float]
    points: int

    @property
    def same_machine(self) -> bool:
        """Unless the whole interval lies beyond SPEED_TOLERANCE of 1."""
        lo, hi = self.ci95
        return lo <= 1 + SPEED_TOLERANCE and hi >= 1 - SPEED_TOLERANCE


def _chain_rate(results: Mapping[str, Any]) -> float | None:
    rate = (results.get("method") or {}).get("chain_rps")
    return None if rate is None else float(rate)


def _cpu_rates(results: Mapping[str, Any]) -> set[float]:
    """The rates the run's CPU-per-request windows ran at (one, the common rate)."""
    return {
        float(cpu["offered_rps"])
        for name, design in results["designs"].items()
        if name != CONTROL and (cpu := design.get("cpu_us_per_request")) and "offered_rps" in cpu
    }


def speed(a: Mapping[str, Any], b: Mapping[str, Any]) -> Speed | None:
    """None where either run has no control chain over two hop counts, or the two chains ran
    at different rates (`method.chain_rps`): a request's CPU depends on the rate it is offered
    at, so only like for like says anything of the machines."""
    if _chain_rate(a) != _chain_rate(b):
        return None
    logs = []
    for k in HOPS:
        x = a["designs"].get(CONTROL, {}).get("hops", {}).get(str(k), {})
        y = b["designs"].get(CONTROL, {}).get("hops", {}).get(str(k), {})
        cx, cy = x.get("cpu_us_per_request"), y.get("cpu_us_per_request")
        if cx and cy and cx > 0 and cy > 0:
            logs.append(math.log(cy / cx))
    if len(logs) < 2:
        return None
    lo, hi = stats.interval(logs)["ci95"]  # of the mean of the log ratios
    return Speed(math.exp(statistics.fmean(logs)), (math.exp(lo), math.exp(hi)), len(logs))


def lapped(
    a: Mapping[str, Any], b: Mapping[str, Any], figure: str = "spin_us_per_lap"
) -> tuple[float, list[float]] | None:
    """A gauge (gauge.GAUGES: the spinners' lap, the load generator's CPU per request) in B's
    CPU-per-request windows over A's, design by design (each design's median in each run),
    with its 95 % interval (stats.ratio over the designs both runs measured); None where fewer
    than two designs have the figure in both, or the two runs' CPU windows ran at different
    rates (a gauge's reading depends on the rate: the wake-ups between requests)."""
    if _cpu_rates(a) != _cpu_rates(b):
        return None
    la, lb = gauge.laps(a, figure), gauge.laps(b, figure)
    shared = sorted(set(la) & set(lb))
    if len(shared) < 2:
        return None
    return stats.ratio([lb[d] for d in shared], [la[d] for d in shared])


def report(a: Mapping[str, Any], b: Mapping[str, Any], names: tuple[str, str]) -> str:
    found = agreements(a, b)
    lines = [
        f"A: {names[0]}, B: {names[1]}",
        "",
        "| design | figure | A median (95 % CI) | B median (95 % CI) | A in B's CI | B in A's CI |",
        "|---|---|---|---|---|---|",
    ]
    for row in found:
        cells = [f"{v[0]:,.0f} ({v[1]:,.0f}-{v[2]:,.0f})" for v in (row.a, row.b)]
        verdicts = (
            ["yes" if ok else "NO" for ok in (row.a_in_b, row.b_in_a)]
            if row.judged
            else ["one run, no interval"] * 2
        )
        lines.append(f"| {row.design} | {row.figure} | {' | '.join(cells + verdicts)} |")
    lines.append("")
    apart = [f"{row.design} {row.figure}" for row in found if not row.agree]
    missing = unmatched(a, b)
    lines.append(
        f"{len(found) - len(apart)} of {len(found) + len(missing)} figures agree"
        + (f"; not: {', '.join(apart + missing)}." if apart or missing else ".")
    )
    control = speed(a, b)
    if control is None:
        rates = (_chain_rate(a), _chain_rate(b))
        lines.append(
            f"The two ran the control chain at different rates ({rates[0]:g} and {rates[1]:g} "
            "req/s): the machines are not compared by it."
            if rates[0] != rates[1] and None not in rates
            else "The control chain is missing from a run: the machines are not compared by it."
        )
    else:
        lo, hi = control.ci95
        lines.append(
            f"The control chain (no check anywhere) cost {control.ratio:.2f}x in B what it cost "
            f"in A (95 % CI {lo:.2f}-{hi:.2f}, {control.points} hop counts): "
            + (
                "not distinguishable at this precision from the same speed (within "
                f"{SPEED_TOLERANCE * 100:g} %)."
                if control.same_machine
                else "the machine ran at another speed, and absolute figures cannot agree."
            )
        )
    if _cpu_rates(a) != _cpu_rates(b):
        shown = [", ".join(f"{r:g}" for r in sorted(_cpu_rates(x))) or "-" for x in (a, b)]
        lines.append(
            f"The two ran their CPU-per-request windows at different rates ({shown[0]} and "
            f"{shown[1]} req/s): their gauges are not compared."
        )
    for figure, what in gauge.GAUGES.items():
        lap = lapped(a, b, figure)
        if lap is not None:
            value, (lo, hi) = lap
            lines.append(
                f"{what[0].upper()}{what[1:]} in the CPU-per-request windows cost "
                f"{value:.2f}x in B what it cost in A (95 % CI {lo:.2f}-{hi:.2f})."
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.measure.agree",
        description="Whether two runs' results.json agree on every design's capacity and CPU "
        "per request, and how fast the machine ran in each (the control chain).",
    )
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    try:
        # Analysed afresh: the intervals are this code's, whatever wrote the files.
        a, b = (analyse(load(path)) for path in (args.a, args.b))
    except SystemExit as error:  # schema.load's own message: not a results file
        print(f"cannot compare: {error}", file=sys.stderr)
        return 2
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        print(f"cannot compare: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    print(report(a, b, (str(args.a), str(args.b))))
    found = agreements(a, b)
    if not found:
        return 2
    return 0 if all(row.agree for row in found) and not unmatched(a, b) else 1


if __name__ == "__main__":
    sys.exit(main())
