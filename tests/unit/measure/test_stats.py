"""loadtests/measure/stats.py by numbers: known intervals, a known fit, and the coverage of the
intervals over many seeded samples."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from loadtests.measure import stats

# Student's t 0.975 quantiles from the printed tables.
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 6: 2.447, 10: 2.228, 20: 2.086, 30: 2.042}


def test_t975_matches_the_printed_table_and_tends_to_the_normal() -> None:
    for df, value in T_TABLE.items():
        assert stats.t975(df) == pytest.approx(value, abs=6e-4)
    assert stats.t975(120) == pytest.approx(1.980, abs=6e-4)
    assert stats.t975(1e7) == pytest.approx(stats.Z975, abs=1e-4)


def test_t975_of_a_fractional_df_lies_between_its_neighbours() -> None:
    # Welch's df is seldom whole; t(2.5) is 3.5747 (a 1/df interpolation would say 3.63).
    assert stats.t975(2.5) == pytest.approx(3.5747, abs=1e-3)
    assert stats.t975(3) < stats.t975(2.5) < stats.t975(2)
    with pytest.raises(ValueError, match="degree of freedom"):
        stats.t975(0.5)


def test_interval_of_three_runs_is_the_t_interval_of_their_mean() -> None:
    figure = stats.interval([10, 12, 14])
    assert figure["median"] == 12
    # mean 12, sd 2, t(2) = 4.303: 12 +- 4.303 * 2 / sqrt(3) = 12 +- 4.969
    assert figure["ci95"] == pytest.approx([7.031, 16.969], abs=2e-3)
    assert figure["runs"] == [10, 12, 14]
    assert stats.has_interval(figure)
    assert stats.spread_pct(figure) == pytest.approx(4.969 / 12 * 100, abs=0.02)


def test_the_interval_is_the_means_and_the_median_the_runs() -> None:
    figure = stats.interval([10, 11, 30])
    assert figure["median"] == 11
    lo, hi = figure["ci95"]
    assert (lo + hi) / 2 == pytest.approx(17.0)
    # The wider side is measured from the median, not the mean.
    assert stats.spread_pct(figure) == pytest.approx((hi - 11) / 11 * 100)


def test_one_run_has_no_interval_and_none_is_an_error() -> None:
    figure = stats.interval([640.0])
    assert figure == {"median": 640.0, "ci95": [640.0, 640.0], "runs": [640.0]}
    assert not stats.has_interval(figure)
    with pytest.raises(ValueError, match="at least one run"):
        stats.interval([])


def test_the_t_interval_covers_the_true_mean_95_times_in_100() -> None:
    rng = random.Random(1)
    trials = 2000
    covered = 0
    for _ in range(trials):
        lo, hi = stats.interval([rng.gauss(100, 5) for _ in range(3)])["ci95"]
        covered += lo <= 100 <= hi
    # Binomial(2000, 0.95): sd 0.49 %; a normal-quantile interval would cover ~81 % here.
    assert 0.93 <= covered / trials <= 0.97


def test_ratio_of_means_with_its_log_scale_welch_interval() -> None:
    value, (lo, hi) = stats.ratio([10, 12, 14], [5, 6, 7])
    assert value == pytest.approx(2.0)
    # CV 1/6 on both sides: se(log ratio) = sqrt(2 * (1/36) / 3) = 0.13608, Welch df = 4,
    # t(4) = 2.7764: exp(+-0.37782)
    assert lo == pytest.approx(2 * math.exp(-0.37782), rel=1e-4)
    assert hi == pytest.approx(2 * math.exp(0.37782), rel=1e-4)
    assert lo * hi == pytest.approx(value**2)  # symmetric on the log scale


def test_ratio_without_a_second_run_has_no_interval_and_needs_positive_figures() -> None:
    value, ci = stats.ratio([10.0], [5, 6, 7])
    assert value == pytest.approx(10 / 6)
    assert ci == [value, value]
    with pytest.raises(ValueError, match="positive"):
        stats.ratio([1, 2], [-1, -2])
    with pytest.raises(ValueError, match="at least one run"):
        stats.ratio([], [1.0])


def test_the_ratio_interval_covers_the_true_ratio_95_times_in_100() -> None:
    rng = random.Random(2)
    trials = 2000
    covered = 0
    for _ in range(trials):
        _, (lo, hi) = stats.ratio(
            [rng.gauss(1500, 30) for _ in range(3)], [rng.gauss(670, 20) for _ in range(3)]
        )
        covered += lo <= 1500 / 670 <= hi
    assert 0.93 <= covered / trials <= 0.975


def test_fit_of_a_known_line_and_its_slope_interval() -> None:
    line = stats.fit([1, 2, 3, 4, 5], [2, 4, 5, 4, 5])
    assert line.slope == pytest.approx(0.6)
    assert line.intercept == pytest.approx(2.2)
    assert line.residuals == pytest.approx((-0.8, 0.6, 1.0, -0.6, -0.2))
    # SSE 2.4, s^2 = 0.8, Sxx = 10: se = 0.28284; t(3) = 3.1824
    assert line.slope_se == pytest.approx(math.sqrt(0.08))
    assert line.df == 3
    assert line.slope_ci95 == pytest.approx([0.6 - 0.90011, 0.6 + 0.90011], abs=1e-3)
    assert line.at(10) == pytest.approx(8.2)


def test_fit_recovers_a_noisy_line_and_its_interval_covers_the_truth() -> None:
    rng = random.Random(3)
    xs = [float(k) for k in range(1, 6)] * 2
    trials, covered, slopes = 1000, 0, []
    for _ in range(trials):
        line = stats.fit(xs, [500 + 340 * x + rng.gauss(0, 15) for x in xs])
        slopes.append(line.slope)
        covered += line.slope_ci95[0] <= 340 <= line.slope_ci95[1]
    assert statistics.fmean(slopes) == pytest.approx(340, abs=0.5)
    assert 0.93 <= covered / trials <= 0.975


def test_fit_of_two_points_has_no_interval_and_a_constant_x_is_an_error() -> None:
    line = stats.fit([1, 2], [3, 5])
    assert (line.slope, line.df, line.slope_ci95, line.has_interval) == (2, 0, [2, 2], False)
    with pytest.raises(ValueError, match="two different x"):
        stats.fit([2, 2, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="two points"):
        stats.fit([1], [1])


def test_difference_of_slopes_adds_variances_with_welch_df() -> None:
    xs = [1, 2, 3, 4, 5]
    base = [2.0, 4, 5, 4, 5]
    steeper = stats.fit(xs, [y + 40 * x for x, y in zip(xs, base, strict=True)])
    diff, (lo, hi) = stats.difference_of_slopes(steeper, stats.fit(xs, base))
    assert diff == pytest.approx(40)
    # equal se (0.28284) and df (3) on both sides: se 0.4, Welch df 6, t(6) = 2.4469
    assert (hi - lo) / 2 == pytest.approx(2.4469 * 0.4, abs=1e-3)
    flat = stats.fit([1, 2], [1, 1])
    diff, ci = stats.difference_of_slopes(steeper, flat)  # flat has no residual df
    assert diff == pytest.approx(40.6)
    assert ci == [diff, diff]


def test_overlap_counts_touching_intervals() -> None:
    assert stats.overlap([1, 2], [2, 3])
    assert stats.overlap([1, 5], [2, 3])
    assert not stats.overlap([1, 2], [2.01, 3])
    assert not stats.overlap([4, 5], [1, 3.9])
