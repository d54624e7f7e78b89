"""How the machine moved during the windows, and how closely the figures moved with it.

Every figure of the bench is CPU time or a rate the CPUs allow, so it moves with the machine
under it. On a shared virtual machine the host's other tenants slow a virtual CPU without taking
it away (no steal time is reported), and that slowness lands in a window's figures as if the
design had cost it. The spinners that keep the system's CPUs awake (`loadtests/load/affinity.py:
kept_awake`) run the same empty loop at idle priority in the gaps the system leaves them and
count their laps; each window records their CPU time per lap while it was measured
(`spin_us_per_lap`). A lap costs more when the CPU runs slower and when each of the system's
wake-ups costs more (the switch in and out is charged to the task it interrupts): what a
request's CPU time suffers from too. It is an indicator, not the machine itself: a busier
window interrupts the spinner more, so a dearer window can slow the lap by itself, and a drift
shared by both over a run correlates them too. What it shows is that CPU per request moved
with it, not why.

`machine` reads it over the CPU-per-request windows (PHASE: one rate, one request, every design
and repeat in turn), within designs (each design's mean taken out, on the log scale), so a
design's own cost is not the machine's:
- `lap_cv_pct`: how much the lap moved from window to window (pooled standard deviation);
- `cpu_cv_pct`: how much CPU per request moved, the same way;
- `r`, `elasticity`, `explained_pct`: how closely the second moved with the first (the
  within-design correlation; the slope of log CPU per request on log lap; r squared).

Measured on the AMD EPYC host (runs E, F and G, 30 windows each): the lap's CV 3.5-4.3 %, CPU
per request's 12-14 %, r = 0.83, 0.63 and 0.65, elasticity 2.5, 2.4 and 2.2: a window whose
spinners ran 1 % slower cost 2.2-2.5 % more CPU per request, and the lap accounts for 70, 40
and 43 % of the scatter's variance: much of it, not all. (A between-window gauge, a fixed loop
timed before each window, tried first and removed in 047ec31: it read the same CPUs at 14.7-
15.8 ms for minutes on end and had no relation to the windows' costs, r = 0.09 over run E's 30
windows.)

The second gauge is the load generator's own CPU per request (`load_cpu_us_per_request`), on its
own CPU: the same requests each time, and real work (an HTTP client's), where the lap is an
empty loop. It also handles the answers, so a slower system can move it too. `machine` reads it
the same way (`load_*`), and both together (`both_explained_pct`: a within-design regression of
log CPU per request on both; `residual_cv_pct`: what is left). Runs I, J and K (2026-12-07, a
lap CV of 6.9-8.5 %): the load generator's r with CPU per request 0.78, 0.67 and 0.77, the lap's
0.55, 0.67 and 0.87, the two gauges' with each other 0.2-0.4; together 76, 63 and 87 % of its
variance, leaving a CV of 5.8, 6.4 and 5.1 % of CPU per request's 11.3, 10.1 and 13.2 %. Each
gauge sees part of what moved CPU per request, and the two different parts. A correlation again,
and R^2 in-sample over 30 windows; the figures are not corrected by either gauge.

`Pace` judges each window as it is recorded: slow when its lap runs more than `slow_pct` %
over the run's usual (capacity.retried measures a capacity window that failed so again).

The check `analysis.check_machine_steady`: the lap's CV within STEADY_LAP_CV_PCT. With the
elasticities seen here (about 2), 2 % of lap is 4-5 % of CPU per request, and five repeats
make that +-5-6 % of a figure's 95 % interval (t(4) / sqrt(5) = 1.24 times the CV): more than
half of the +-10 % the issue allows, before any design has varied at all. No run on the AMD
host has met it (2.2-8.5 %). It is judged on the lap alone: no run has shown what the load
generator's CV is on a machine that holds still.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict, cast

from loadtests.measure.model import usable
from loadtests.measure.schema import Window

PHASE = "cpu"  # the windows the machine is read over
STEADY_LAP_CV_PCT = 2.0


class Machine(TypedDict):
    """results["machine"], filled by the analysis."""

    phase: str
    windows: int  # those with a lap figure, of designs with two or more of them
    lap_us: float  # the median lap
    lap_cv_pct: float  # the lap's pooled within-design standard deviation (log scale), %
    cpu_cv_pct: float  # the same of CPU per request
    r: float | None  # within-design correlation; None where either did not move at all
    elasticity: float | None  # within-design slope of log(CPU per request) on log(lap)
    explained_pct: float | None  # r^2, %
    # The same of the load generator's CPU per request (load_cpu_us_per_request: its own CPU,
    # the same work each time); None for a run without it.
    load_us: float | None
    load_cv_pct: float | None
    load_r: float | None
    load_elasticity: float | None
    load_explained_pct: float | None
    # Lap and load generator together (a within-design regression on both): the share of CPU
    # per request's variance they explain, and the CV left over (n - designs - 2 df).
    both_explained_pct: float | None
    residual_cv_pct: float | None
    # Over every window of the run (every phase), as it was measured (Pace):
    judged_windows: int  # judged slow or not (from the run's MIN_SEEN-th window with a lap)
    slow_windows: int  # measured while the machine ran slow
    replaced_windows: int  # capacity windows that failed so, measured again (capacity.retried)


MIN_WINDOWS = 12  # in all, of designs with two or more: fewer give an r of little meaning


def _within(windows: Sequence[Mapping[str, Any]], field: str) -> list[float]:
    """Each window's log figure less its design's mean log figure (the design's own level
    taken out: what is left is the window's)."""
    means: dict[str, float] = {}
    for design in {w["design"] for w in windows}:
        means[design] = statistics.fmean(
            math.log(w[field]) for w in windows if w["design"] == design
        )
    return [math.log(w[field]) - means[w["design"]] for w in windows]


def machine(windows: Iterable[Window]) -> Machine | None:
    """The machine's movement over the PHASE windows; None where fewer than MIN_WINDOWS of
    designs with two or more have a lap figure (a run from before the laps; --quick's one
    window per design).

    Within designs (each design's own level taken out, on the log scale): the CVs are the
    pooled standard deviations of the log figures, n - designs degrees of freedom (a CV for
    small ones); r and the elasticity are the within-design correlation and regression slope
    of log CPU per request on log lap. Beside them, over every window of the run, how many
    ran slow (Pace) and how many were measured again for it."""
    every = list(windows)
    found = _machine(every)
    if found is None:
        return None
    judged = [w for w in every if "machine_slow" in w]
    return cast(
        Machine,
        {
            **found,
            "judged_windows": len(judged),
            "slow_windows": sum(1 for w in judged if w["machine_slow"]),
            "replaced_windows": sum(1 for w in every if w.get("replaced")),
        },
    )


def _machine(windows: Iterable[Window]) -> dict[str, Any] | None:
    found = [w for w in lapped(windows) if (w.get("cpu_us_per_request") or 0) > 0]
    count: dict[str, int] = {}
    for w in found:
        count[w["design"]] = count.get(w["design"], 0) + 1
    kept = [w for w in found if count[w["design"]] >= 2]
    designs = len({w["design"] for w in kept})
    if len(kept) < MIN_WINDOWS:
        return None
    laps, cpus = _within(kept, "spin_us_per_lap"), _within(kept, "cpu_us_per_request")
    df = len(kept) - designs
    syy = sum(y * y for y in cpus)
    lap = _follows(laps, cpus)
    out: dict[str, Any] = {
        "phase": PHASE,
        "windows": len(kept),
        "lap_us": round(statistics.median(w["spin_us_per_lap"] for w in kept), 2),
        "lap_cv_pct": round(math.sqrt(sum(x * x for x in laps) / df) * 100, 2),
        "cpu_cv_pct": round(math.sqrt(syy / df) * 100, 2),
        "r": lap[0],
        "elasticity": lap[1],
        "explained_pct": lap[2],
        **dict.fromkeys(LOAD_FIELDS),
    }
    if all((w.get("load_cpu_us_per_request") or 0) > 0 for w in kept):
        loads = _within(kept, LOAD_FIGURE)
        load = _follows(loads, cpus)
        out |= {
            "load_us": round(
                statistics.median(float(w["load_cpu_us_per_request"]) for w in kept), 1
            ),
            "load_cv_pct": round(math.sqrt(sum(x * x for x in loads) / df) * 100, 2),
            "load_r": load[0],
            "load_elasticity": load[1],
            "load_explained_pct": load[2],
        }
        both = _explained_by_both(laps, loads, cpus)
        if both is not None and df > 2:
            out["both_explained_pct"] = round(both * 100, 1)
            out["residual_cv_pct"] = round(math.sqrt(syy * (1 - both) / (df - 2)) * 100, 2)
    return out


LOAD_FIGURE = "load_cpu_us_per_request"
LOAD_FIELDS = (
    "load_us",
    "load_cv_pct",
    "load_r",
    "load_elasticity",
    "load_explained_pct",
    "both_explained_pct",
    "residual_cv_pct",
)


def _follows(xs: Sequence[float], ys: Sequence[float]) -> tuple[float | None, ...]:
    """r, the slope of ys on xs and r^2 (%), of values already centred; Nones where either
    did not move."""
    sxx = sum(x * x for x in xs)
    syy = sum(y * y for y in ys)
    sxy = sum(x * y for x, y in zip(xs, ys, strict=True))
    if sxx <= 0 or syy <= 0:
        return None, None, None
    r = sxy / math.sqrt(sxx * syy)
    return round(r, 3), round(sxy / sxx, 3), round(r * r * 100, 1)


def _explained_by_both(a: Sequence[float], b: Sequence[float], ys: Sequence[float]) -> float | None:
    """R^2 of the least-squares regression of ys on a and b together (all centred)."""
    saa = sum(x * x for x in a)
    sbb = sum(x * x for x in b)
    sab = sum(x * y for x, y in zip(a, b, strict=True))
    say = sum(x * y for x, y in zip(a, ys, strict=True))
    sby = sum(x * y for x, y in zip(b, ys, strict=True))
    syy = sum(y * y for y in ys)
    det = saa * sbb - sab * sab
    if det <= 0 or syy <= 0:
        return None
    ka = (say * sbb - sby * sab) / det
    kb = (sby * saa - say * sab) / det
    return (ka * say + kb * sby) / syy


def lapped(windows: Iterable[Window]) -> list[Window]:
    """The PHASE windows that count (model.counts) with a lap figure."""
    return [w for w in usable(windows, PHASE) if (w.get("spin_us_per_lap") or 0) > 0]


# The gauges a window records, and what each is (agree.py compares two runs by each).
GAUGES = {
    "spin_us_per_lap": "the spinners' lap on the system's CPUs",
    "load_cpu_us_per_request": "the load generator's own CPU per request on its CPU",
}


def laps(results: Mapping[str, Any], figure: str = "spin_us_per_lap") -> dict[str, float]:
    """Each design's median `figure` (one of GAUGES) over its PHASE windows (those `machine`
    reads): to compare two runs' machines design by design, not window by window (the windows
    of one repeat move together, and are not independent)."""
    found: dict[str, list[float]] = {}
    for w in usable(results.get("windows", ()), PHASE):
        value = w.get(figure)
        if isinstance(value, int | float) and value > 0:
            found.setdefault(w["design"], []).append(float(value))
    return {design: statistics.median(values) for design, values in found.items()}


MIN_SEEN = 8  # windows with a lap before Pace judges one slow: a median of fewer moves


class Pace:
    """The machine's usual lap in a run so far, and whether a window ran slower than it.

    The usual lap is the median of the laps of every window the run has measured, warm-ups
    included (every phase: the spinners run the same loop on the same CPUs throughout), so a
    slow stretch moves it only once it is most of the run. A window is slow when its lap exceeds
    that median by more than `slow_pct` %: on the AMD EPYC host the laps of ordinary windows lie
    within 2-3 % of their run's median, and 15-29 % of windows ran over 5 % slower (runs E, F
    and G). Nothing is judged before MIN_SEEN windows have a lap, nor a window without one
    (under meter.MIN_LAPS laps: the system left its spinners no gaps): `slow` says None then.

    Not the window's own load: a window far past its design's knee (over 1.1 times its median
    capacity) that failed ran its spinners at the usual lap (median 1.00-1.06 of the run's, runs
    E-H), and those that held there at 0.97-1.00; the failures with slow laps are those below the
    knee (median 1.07-1.15, 67-93 % of them slow), where the design held in the other runs."""

    def __init__(self, slow_pct: float, min_seen: int = MIN_SEEN) -> None:
        self.slow_pct = slow_pct
        self.min_seen = min_seen
        self.laps: list[float] = []

    def usual(self) -> float | None:
        return statistics.median(self.laps) if len(self.laps) >= self.min_seen else None

    def slow(self, window: Mapping[str, Any]) -> bool | None:
        lap, usual = window.get("spin_us_per_lap"), self.usual()
        if not lap or usual is None:
            return None
        return bool(lap > usual * (1 + self.slow_pct / 100))

    def saw(self, window: Mapping[str, Any]) -> None:
        lap = window.get("spin_us_per_lap")
        if lap:
            self.laps.append(float(lap))
