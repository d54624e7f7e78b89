"""The machine's speed in each window, and how much of the figures' scatter it explains.

Every figure of the bench is CPU time or a rate the CPUs allow, so it moves with the machine
under it. On a shared virtual machine the host's other tenants slow a virtual CPU without taking
it away (no steal time is reported), and that slowness lands in a window's figures as if the
design had cost it. The spinners that keep the system's CPUs awake (`loadtests/load/affinity.py:
kept_awake`) run the same empty loop at idle priority in the gaps the system leaves them and
count their laps; each window records their CPU time per lap while it was measured
(`spin_us_per_lap`). A lap costs more when the CPU runs slower and when each of the system's
wake-ups costs more (the switch in and out is charged to the task it interrupts): what a
request's CPU time suffers from too.

`machine` reads it over the CPU-per-request windows (PHASE: one rate, one request, every design
and repeat in turn), each window against its design's median, so a design's own cost is not
the machine's:
- `lap_cv_pct`: how much the machine moved from window to window;
- `cpu_cv_pct`: how much CPU per request moved, the same way;
- `r`, `elasticity`, `explained_pct`: how closely the second follows the first (the
  correlation; the slope of log CPU per request on log lap time; r squared).

Measured on the AMD EPYC host (runs E and F, 30 windows each): the lap's CV 4.3 and 3.4 %,
CPU per request's 13.1 and 14.4 %, r = 0.83 and 0.54, elasticity 2.5 and 2.2: a window whose
CPUs ran the loop 1 % slower cost 2.2-2.5 % more CPU per request, and the machine explains 69
and 29 % of the scatter's variance: much of it, not all. A between-window gauge (a fixed
loop timed by its thread's clock before each window) read the same CPUs at 14.7-15.8 ms for
minutes on end and had no relation to the windows' costs (r = 0.09): the machine that matters
is the one during the window.

The check `analysis.check_machine_steady`: the lap's CV within STEADY_LAP_CV_PCT. With the
elasticity seen here, 2 % of lap is 5 % of CPU per request, and five repeats make that +-6 %
of a figure's 95 % interval (t(4) / sqrt(5) = 1.24 times the CV): most of the +-10 % the issue
allows, before any design has varied at all.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

PHASE = "cpu"  # the windows the machine is read over
STEADY_LAP_CV_PCT = 2.0


class Machine(TypedDict):
    """results["machine"], filled by the analysis."""

    phase: str
    windows: int  # those with a lap figure, of designs with two or more of them
    lap_us: float  # the median lap
    lap_cv_pct: float  # each window's lap over its design's median: their CV, %
    cpu_cv_pct: float  # the same of CPU per request
    r: float | None  # None where either did not move at all
    elasticity: float | None  # d log(CPU per request) / d log(lap)
    explained_pct: float | None  # r^2, %


def _relative(windows: list[Mapping[str, Any]], field: str) -> list[float]:
    medians: dict[str, float] = {}
    for design in {w["design"] for w in windows}:
        medians[design] = statistics.median(w[field] for w in windows if w["design"] == design)
    return [w[field] / medians[w["design"]] for w in windows]


def machine(windows: Iterable[Mapping[str, Any]]) -> Machine | None:
    """The machine's movement over the PHASE windows; None where no design has two windows
    with a lap figure (a run from before the laps, or one window per design: --quick)."""
    found = [
        w
        for w in windows
        if w["phase"] == PHASE
        and not w.get("generator_limited", False)
        and (w.get("spin_us_per_lap") or 0) > 0
        and (w.get("cpu_us_per_request") or 0) > 0
    ]
    count: dict[str, int] = {}
    for w in found:
        count[w["design"]] = count.get(w["design"], 0) + 1
    kept = [w for w in found if count[w["design"]] >= 2]
    if not kept:
        return None
    laps, cpus = _relative(kept, "spin_us_per_lap"), _relative(kept, "cpu_us_per_request")
    lap_sd, cpu_sd = statistics.pstdev(laps), statistics.pstdev(cpus)
    r = elasticity = explained = None
    if lap_sd > 0 and cpu_sd > 0:
        r = statistics.correlation(laps, cpus)
        elasticity = statistics.linear_regression(
            [math.log(x) for x in laps], [math.log(y) for y in cpus]
        ).slope
        explained = r * r * 100
    return {
        "phase": PHASE,
        "windows": len(kept),
        "lap_us": round(statistics.median(w["spin_us_per_lap"] for w in kept), 2),
        "lap_cv_pct": round(_cv(laps), 2),
        "cpu_cv_pct": round(_cv(cpus), 2),
        "r": None if r is None else round(r, 3),
        "elasticity": None if elasticity is None else round(elasticity, 3),
        "explained_pct": None if explained is None else round(explained, 1),
    }


def _cv(values: list[float]) -> float:
    """Standard deviation over mean, %: 0 for a single value."""
    if len(values) < 2:
        return 0.0
    return statistics.stdev(values) / statistics.fmean(values) * 100


def laps(results: Mapping[str, Any]) -> list[float]:
    """The lap figures of a run's PHASE windows (to compare two runs' machines)."""
    return [
        float(w["spin_us_per_lap"])
        for w in results.get("windows", ())
        if w["phase"] == PHASE and (w.get("spin_us_per_lap") or 0) > 0
    ]
