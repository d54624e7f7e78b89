"""The knee from the ladder's windows: per design, the highest offered rate held at the SLO in
each round, what ended its ladder, and the figures at the knee (results.json's "knee")."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from loadtests.crossover.plan import Options
from loadtests.crossover.results import Knee, KneeDesign, KneeStep
from loadtests.modes import Mode


def decisive(steps: Sequence[KneeStep]) -> list[KneeStep]:
    """Round 1's window at each offered rate that decided it: the one that held, else the
    last one (a step past the SLO is measured again)."""
    by_rate: dict[float, KneeStep] = {}
    for step in steps:
        if step["round"] != 1:
            continue
        kept = by_rate.get(step["offered_rps"])
        if kept is None or not kept["held"]:
            by_rate[step["offered_rps"]] = step
    return [by_rate[rate] for rate in sorted(by_rate)]


def _design(options: Options, steps: list[KneeStep]) -> KneeDesign:
    """One design's knee: the median of its rounds' knees, and why round 1's ladder ended."""
    rounds = sorted({s["round"] for s in steps})
    by_round: list[float | None] = []
    limit = "ladder end"
    best: KneeStep | None = None
    for round_ in rounds:
        held = None
        # Every rate the round measured, the ladder's and the bisection's, in order: the knee
        # is the last one held below the first one that was not.
        for rate in sorted({s["offered_rps"] for s in steps if s["round"] == round_}):
            windows = [s for s in steps if s["round"] == round_ and s["offered_rps"] == rate]
            passed = [s for s in windows if s["held"]]
            if not passed:
                if round_ == rounds[0]:
                    if all(s["generator_limited"] for s in windows):
                        limit = "load generator"
                    elif all(s["failures"] for s in windows):
                        limit = "errors"
                    else:
                        limit = "slo"
                break
            held = passed[0]
            # Recorded runs from before the open-model knee counted a Locust-limited window as
            # held and ended the ladder there.
            if held["generator_limited"]:
                if round_ == rounds[0]:
                    limit = "load generator"
                break
        by_round.append(held["offered_rps"] if held else None)
        if held is not None and (best is None or held["offered_rps"] > best["offered_rps"]):
            best = held
    known = [k for k in by_round if k is not None]
    knee_rps = statistics.median_low(known) if known else None  # a measured rate
    at = best
    if knee_rps is not None:
        at = min(
            (s for s in steps if s["held"] and s["offered_rps"] == knee_rps),
            key=lambda s: s["round"],
            default=best,
        )
    return {
        "steps": steps,
        "knee_rps": knee_rps,
        "knee_achieved_rps": at["achieved_rps"] if at else None,
        "knee_p99_ms": at["p99_ms"] if at else None,
        "cpu_us_per_request": at["cpu_us_total"] if at else None,
        "cpu_us_services": at["cpu_us_services"] if at else None,
        "limit": limit,
        "by_round": by_round,
    }


def summarize(options: Options, modes: Sequence[Mode], steps: Mapping[str, list[KneeStep]]) -> Knee:
    """Every measured design's knee (in table order) and the ratios between them."""
    designs = {m.name: _design(options, steps[m.name]) for m in modes if steps.get(m.name)}
    ratios = {
        a: {
            b: round(float(da["knee_rps"]) / float(db["knee_rps"]), 2)
            for b, db in designs.items()
            if da["knee_rps"] and db["knee_rps"]
        }
        for a, da in designs.items()
    }
    return {
        "slo_ms": options.slo_ms,
        "ladder": options.ladder(),
        "rounds": options.rounds,
        "designs": designs,
        "ratios": ratios,
    }
