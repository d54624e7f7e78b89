"""The machine during the windows (loadtests/measure/gauge.py) and the check it feeds
(machine_steady), by their numbers on synthetic runs whose machine is known."""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from typing import Any, cast

import pytest

from loadtests.measure import analysis, gauge, stats
from loadtests.measure.schema import Check, Results
from tests.unit.measure import synthetic
from tests.unit.measure.synthetic import Truth


def analysed(truth: Truth) -> dict[str, Any]:
    return cast(dict[str, Any], analysis.analyse(cast(Results, synthetic.build(truth))))


def steady_check(result: dict[str, Any]) -> Check:
    (found,) = [c for c in result["checks"] if c["name"] == "machine_steady"]
    return cast(Check, found)


def within(values: list[float], designs: list[str]) -> list[float]:
    """log value less its design's mean log value."""
    logs = [math.log(v) for v in values]
    means = {
        d: statistics.fmean(x for x, e in zip(logs, designs, strict=True) if e == d)
        for d in set(designs)
    }
    return [x - means[d] for x, d in zip(logs, designs, strict=True)]


def test_the_machine_is_the_within_design_spread_and_slope_on_the_log_scale() -> None:
    result = analysed(Truth(noise=0.01, lap_step=0.03, lap_elasticity=2.5))
    windows = [w for w in result["windows"] if w["phase"] == gauge.PHASE]
    found = result["machine"]
    assert found["windows"] == len(windows) == 6 * 3
    designs = [w["design"] for w in windows]
    laps = within([w["spin_us_per_lap"] for w in windows], designs)
    cpus = within([w["cpu_us_per_request"] for w in windows], designs)
    df = len(windows) - 6
    # The lap moves +-3 % by repeat: its pooled within-design SD on the log scale.
    lap_sd = math.sqrt(sum(x * x for x in laps) / df)
    assert found["lap_cv_pct"] == pytest.approx(lap_sd * 100, abs=0.01)
    assert 2.5 < found["lap_cv_pct"] < 3.5
    assert found["cpu_cv_pct"] == pytest.approx(
        math.sqrt(sum(y * y for y in cpus) / df) * 100, abs=0.01
    )
    slope = statistics.linear_regression(laps, cpus).slope  # both centred: no intercept
    assert found["elasticity"] == pytest.approx(slope, abs=1e-3)
    assert 2.3 < found["elasticity"] < 2.7  # the truth's 2.5, less what the 1 % noise blurs
    r = statistics.correlation(laps, cpus)
    assert found["r"] == pytest.approx(r, abs=1e-3) and r > 0.9
    assert found["explained_pct"] == pytest.approx(r * r * 100, abs=0.1)
    assert found["lap_us"] == pytest.approx(1200 * 0.97)  # two of three repeats are odd


def test_too_few_windows_give_no_figure() -> None:
    windows = synthetic.build(Truth(noise=0.01, lap_step=0.03))["windows"]
    cpu = [w for w in windows if w["phase"] == gauge.PHASE]
    # One design's two windows would give r = 1: below MIN_WINDOWS, no figure at all.
    assert gauge.machine(cpu[:2]) is None
    assert gauge.machine(cpu[: gauge.MIN_WINDOWS]) is not None


def test_a_steady_machine_passes_and_a_moving_one_fails_with_its_share() -> None:
    steady = steady_check(analysed(Truth(noise=0.01, lap_step=0.005, lap_elasticity=2.5)))
    assert steady["ok"] and analysis.judged(steady)
    moving = analysed(Truth(noise=0.01, lap_step=0.03, lap_elasticity=2.5))
    found, check = moving["machine"], steady_check(moving)
    assert found["lap_cv_pct"] > gauge.STEADY_LAP_CV_PCT
    assert not check["ok"] and analysis.judged(check)
    # What the machine alone does to a CPU figure of 3 repeats: t(2) * elasticity * CV / sqrt(3).
    alone = stats.t975(2) * found["elasticity"] * found["lap_cv_pct"] / math.sqrt(3)
    assert f"+-{alone:.0f} %" in check["detail"]


def test_a_run_without_laps_or_with_one_window_per_design_is_not_judged() -> None:
    raw = synthetic.build(Truth(noise=0))
    for window in raw["windows"]:
        window.pop("spin_us_per_lap", None)
    result = analysis.analyse(cast(Results, raw))
    assert result["machine"] is None
    check = steady_check(cast(dict[str, Any], result))
    assert not check["ok"] and not analysis.judged(check)
    one = synthetic.build(Truth(noise=0, repeats=1))
    assert gauge.machine(one["windows"]) is None


def test_a_machine_that_did_not_move_has_no_correlation_to_report() -> None:
    found = gauge.machine(synthetic.build(Truth(noise=0.01, lap_step=0.0))["windows"])
    assert found is not None and found["lap_cv_pct"] == 0.0
    assert found["r"] is None and found["elasticity"] is None


def test_pace_judges_a_window_against_the_median_lap_of_those_before_it() -> None:
    pace = gauge.Pace(slow_pct=5.0, min_seen=4)
    for lap in (1000.0, 990.0, 1010.0):
        pace.saw({"spin_us_per_lap": lap})
    assert pace.usual() is None and pace.slow({"spin_us_per_lap": 5000.0}) is None  # too few
    pace.saw({"spin_us_per_lap": 1400.0})  # one slow window moves the median little
    assert pace.usual() == pytest.approx(1005.0)
    assert pace.slow({"spin_us_per_lap": 1055.0}) is False
    assert pace.slow({"spin_us_per_lap": 1056.0}) is True
    assert pace.slow({}) is None  # no lap: not judged
    pace.saw({})  # and not counted
    assert len(pace.laps) == 4


def test_the_machine_counts_the_windows_judged_slow_and_those_measured_again() -> None:
    result = analysed(Truth(noise=0.01, lap_step=0.03, lap_elasticity=2.5))
    windows = result["windows"]
    for i, w in enumerate(windows):
        w["machine_slow"] = i % 3 == 0
    windows[0]["replaced"] = True
    windows[1]["replaced"] = True
    del windows[2]["machine_slow"]
    found = gauge.machine(windows)
    assert found is not None
    assert found["judged_windows"] == len(windows) - 1
    assert found["slow_windows"] == sum(1 for i in range(len(windows)) if i % 3 == 0)
    assert found["replaced_windows"] == 2


def test_the_load_generators_cpu_is_a_second_gauge_and_both_leave_the_noise() -> None:
    truth = Truth(
        noise=0.01,
        lap_step=0.03,
        lap_elasticity=1.0,
        load_us=300.0,
        load_step=0.05,
        load_elasticity=1.5,
    )
    result = analysed(truth)
    windows = [w for w in result["windows"] if w["phase"] == gauge.PHASE]
    found = result["machine"]
    designs = [w["design"] for w in windows]
    loads = within([w["load_cpu_us_per_request"] for w in windows], designs)
    cpus = within([w["cpu_us_per_request"] for w in windows], designs)
    df = len(windows) - 6
    assert found["load_us"] == 300.0  # repeats 1, 2, 3: x1.05, x1, x0.95
    assert found["load_cv_pct"] == pytest.approx(
        math.sqrt(sum(x * x for x in loads) / df) * 100, abs=0.01
    )
    assert found["load_r"] == pytest.approx(statistics.correlation(loads, cpus), abs=1e-3)
    assert found["load_elasticity"] == pytest.approx(
        statistics.linear_regression(loads, cpus).slope, abs=1e-3
    )
    # Lap and load together: R^2 as an independent fit computes it (Frisch-Waugh: the
    # residuals of CPU and of load, each regressed on the lap, regressed on one another).
    laps = within([w["spin_us_per_lap"] for w in windows], designs)

    def residuals(ys: list[float], xs: list[float]) -> list[float]:
        slope = statistics.linear_regression(xs, ys, proportional=True).slope
        return [y - slope * x for x, y in zip(xs, ys, strict=True)]

    cpu_left, load_left = residuals(cpus, laps), residuals(loads, laps)
    rest = residuals(cpu_left, load_left)
    r2 = 1 - sum(e * e for e in rest) / sum(y * y for y in cpus)
    assert found["both_explained_pct"] == pytest.approx(r2 * 100, abs=0.1)
    assert found["residual_cv_pct"] == pytest.approx(
        math.sqrt(sum(e * e for e in rest) / (df - 2)) * 100, abs=0.01
    )
    # ... all but the 1 % noise: what is left is about 1 %.
    assert found["both_explained_pct"] > max(found["explained_pct"], found["load_explained_pct"])
    assert found["both_explained_pct"] > 90
    assert 0.5 < found["residual_cv_pct"] < 1.6
    check = steady_check(result)
    width = stats.t975(2) * found["residual_cv_pct"] / math.sqrt(3)
    assert (
        f"leaving a CV of {found['residual_cv_pct']:.1f} %: were the figures corrected for both "
        f"(they are not), +-{width:.0f} % on 3 repeats" in (check["detail"])
    )
    # Without noise, the two explain everything.
    exact = gauge.machine(synthetic.build(replace(truth, noise=0))["windows"])
    assert exact is not None and exact["both_explained_pct"] == pytest.approx(100, abs=0.1)
    assert exact["residual_cv_pct"] == pytest.approx(0, abs=0.05)
    # A run without the figure has none of these.
    assert analysed(replace(truth, load_us=0.0))["machine"]["load_r"] is None
