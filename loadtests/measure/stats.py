"""The statistics every figure of the one instrument goes through: a repeated figure's median and
the 95 % interval of its mean, the ratio of two figures with its interval, a least-squares line
with its slope's interval, and the difference of two slopes.

Pure standard library (statistics, math; no scipy): the 0.975 quantile of Student's t is
computed from the t distribution itself (the regularized incomplete beta function), so a
fractional Welch-Satterthwaite df gets its own quantile rather than an interpolated one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from loadtests.measure.schema import Interval

Z975 = 1.959964  # the normal distribution's 0.975 quantile: t's limit
ONE_RUN = "one run, no interval"  # what the report says where a figure has a single run


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified
    Lentz, as in Numerical Recipes' betai/betacf)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only below this point
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    value = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            value *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * value / a


def t975(df: float) -> float:
    """Student's t 0.975 quantile for `df` degrees of freedom, whole or not (Welch's df is
    not): the t where P(|T| > t) = 0.05, found by bisection on the t distribution's tail,
    P(|T| > t) = I_{df / (df + t^2)}(df / 2, 1 / 2)."""
    if not df >= 1 - 1e-9:
        raise ValueError(f"a t interval needs at least one degree of freedom, not {df:g}")
    df = max(df, 1.0)
    lo, hi = Z975, 13.0  # t(1) = 12.706 is the largest a df >= 1 gives
    for _ in range(100):
        mid = (lo + hi) / 2
        if _incomplete_beta(df / 2, 0.5, df / (df + mid * mid)) > 0.05:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-9:
            break
    return (lo + hi) / 2


def interval(runs: Sequence[float]) -> Interval:
    """The median of the runs and the 95 % interval of their mean (Student's t, df = n - 1).

    One run has no interval: ci95 is [x, x], and has_interval() says so, for the report to
    print "one run, no interval" rather than a spurious certainty."""
    values = [float(x) for x in runs]
    if not values:
        raise ValueError("an interval needs at least one run")
    median = statistics.median(values)
    if len(values) < 2:
        return {"median": median, "ci95": [values[0], values[0]], "runs": values}
    mean = statistics.fmean(values)
    half = t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return {"median": median, "ci95": [mean - half, mean + half], "runs": values}


def has_interval(figure: Interval) -> bool:
    """Whether the figure's ci95 means anything (two runs or more)."""
    return len(figure["runs"]) >= 2


def spread_pct(figure: Interval) -> float:
    """How far the 95 % interval reaches from the median, on its wider side, in % of the
    median (the interval is the mean's, so it need not be centred on the median)."""
    lo, hi = figure["ci95"]
    median = figure["median"]
    if median == 0:
        return math.inf if hi > lo else 0.0
    return max(median - lo, hi - median) / abs(median) * 100


def ratio(a_runs: Sequence[float], b_runs: Sequence[float]) -> tuple[float, list[float]]:
    """mean(a) / mean(b) with its 95 % interval.

    The interval is built on the log scale, where a ratio is a difference: by the delta method
    the variance of log(mean) is CV^2 / n (CV = standard deviation / mean), the two variances
    add, the degrees of freedom are Welch-Satterthwaite's, and exp() brings the bounds back, so
    the interval is asymmetric as a ratio's should be and never crosses zero. When either side
    has a single run, there is no interval: [ratio, ratio].
    """
    a, b = [float(x) for x in a_runs], [float(x) for x in b_runs]
    if not a or not b:
        raise ValueError("a ratio needs at least one run on each side")
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    if mean_a <= 0 or mean_b <= 0:
        raise ValueError("a ratio's interval needs positive figures")
    value = mean_a / mean_b
    if len(a) < 2 or len(b) < 2:
        return value, [value, value]
    var_a = (statistics.stdev(a) / mean_a) ** 2 / len(a)
    var_b = (statistics.stdev(b) / mean_b) ** 2 / len(b)
    se = math.sqrt(var_a + var_b)
    if se == 0:
        return value, [value, value]
    df = se**4 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    half = t975(df) * se
    return value, [value * math.exp(-half), value * math.exp(half)]


@dataclass(frozen=True, slots=True)
class Fit:
    """A least-squares line y = intercept + slope * x, and how sure its slope is."""

    slope: float
    intercept: float
    slope_se: float  # standard error of the slope; 0 with no degree of freedom left
    df: int  # n - 2: the residual degrees of freedom
    slope_ci95: list[float]  # [lo, hi]; [slope, slope] when df == 0
    residuals: tuple[float, ...]  # y - line, in the order given
    n: int

    def at(self, x: float) -> float:
        return self.intercept + self.slope * x

    @property
    def has_interval(self) -> bool:
        return self.df >= 1


def fit(xs: Sequence[float], ys: Sequence[float]) -> Fit:
    """Ordinary least squares; the slope's 95 % interval is slope +- t(n-2) * se, with
    se^2 = (residual sum of squares / (n - 2)) / sum((x - mean x)^2)."""
    if len(xs) != len(ys):
        raise ValueError("a fit needs as many x as y")
    n = len(xs)
    if n < 2:
        raise ValueError("a fit needs at least two points")
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx <= 1e-12:
        raise ValueError("a fit needs at least two different x")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = mean_y - slope * mean_x
    residuals = tuple(y - (intercept + slope * x) for x, y in zip(xs, ys, strict=True))
    df = n - 2
    if df == 0:
        return Fit(slope, intercept, 0.0, 0, [slope, slope], residuals, n)
    se = math.sqrt(sum(r * r for r in residuals) / df / sxx)
    half = t975(df) * se
    return Fit(slope, intercept, se, df, [slope - half, slope + half], residuals, n)


def difference_of_slopes(fa: Fit, fb: Fit) -> tuple[float, list[float]]:
    """fa.slope - fb.slope with its 95 % interval: the two fits are independent, so their
    variances add; the degrees of freedom are Welch-Satterthwaite's. Without an interval on
    either side: [diff, diff]."""
    diff = fa.slope - fb.slope
    if not (fa.has_interval and fb.has_interval):
        return diff, [diff, diff]
    var_a, var_b = fa.slope_se**2, fb.slope_se**2
    if var_a + var_b == 0:
        return diff, [diff, diff]
    df = (var_a + var_b) ** 2 / (var_a**2 / fa.df + var_b**2 / fb.df)
    half = t975(df) * math.sqrt(var_a + var_b)
    return diff, [diff - half, diff + half]


def overlap(ci_a: Sequence[float], ci_b: Sequence[float]) -> bool:
    """Whether two intervals [lo, hi] share a point (touching counts)."""
    return ci_a[0] <= ci_b[1] and ci_b[0] <= ci_a[1]
