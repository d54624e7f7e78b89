"""The speed gauge (loadtests/measure/gauge.py) and the check it feeds (machine_steady): the
gauge's sampling on real CPUs, its spread's numbers, and the check's verdicts on recorded runs."""

from __future__ import annotations

import math
import os
import statistics
from typing import Any, cast

from loadtests.measure import analysis, gauge, stats
from loadtests.measure.schema import Check, Results
from tests.unit.measure import synthetic
from tests.unit.measure.synthetic import Truth


def machine_steady(truth: Truth, **environment: Any) -> Check:
    raw = synthetic.build(truth)
    raw["environment"].update(environment)
    result = analysis.analyse(cast(Results, raw))
    (found,) = [c for c in result["checks"] if c["name"] == "machine_steady"]
    return found


def test_a_sample_is_the_works_cpu_time_on_that_cpu_and_leaves_the_caller_where_it_was() -> None:
    mine = os.sched_getaffinity(0)
    for cpu in sorted(mine):
        ms = gauge.sample(cpu, iterations=20_000)
        assert 0 < ms < 5_000
    assert os.sched_getaffinity(0) == mine


def test_the_gauge_samples_every_cpu_when_its_period_has_passed() -> None:
    now = [100.0]
    cpus = sorted(os.sched_getaffinity(0))
    meter = gauge.Gauge(cpus, every_s=10.0, clock=lambda: now[0], iterations=1_000)
    meter.maybe()  # the first call samples
    now[0] += 9.9
    meter.maybe()  # too soon
    assert len(meter.samples) == len(cpus)
    now[0] += 0.1
    meter.maybe()
    meter.take()  # at once, whatever the clock
    assert len(meter.samples) == 3 * len(cpus)
    assert [s["t_s"] for s in meter.samples[:: len(cpus)]] == [0.0, 10.0, 10.0]
    figure = meter.figure()
    assert set(figure["by_cpu"]) == {str(c) for c in cpus}
    assert all(s["n"] == 3 for s in figure["by_cpu"].values())


def test_before_a_window_it_samples_every_cpu_window_and_others_when_due() -> None:
    now = [0.0]
    cpus = sorted(os.sched_getaffinity(0))
    meter = gauge.Gauge(cpus, every_s=10.0, clock=lambda: now[0], iterations=1_000)
    first = meter.before("capacity")  # the first is due
    assert first is not None and len(meter.samples) == len(cpus)
    assert first == round(statistics.fmean(s["ms"] for s in meter.samples), 3)
    now[0] += 1.0
    assert meter.before("capacity") is None  # not due: no sample, no reading
    for phase in gauge.EVERY_WINDOW:
        reading = meter.before(phase)  # every window of these, due or not
        assert reading == round(statistics.fmean(s["ms"] for s in meter.samples[-len(cpus) :]), 3)
    assert len(meter.samples) == (1 + len(gauge.EVERY_WINDOW)) * len(cpus)
    assert gauge.Gauge((), clock=lambda: 0.0).before("cpu") is None  # no CPUs yet: nothing


def test_a_spread_is_the_samples_median_range_and_cv() -> None:
    values = [10.0, 12.0, 11.0, 15.0]
    found = gauge.spread(values)
    assert found["n"] == 4
    assert found["median_ms"] == 11.5
    assert (found["min_ms"], found["max_ms"]) == (10.0, 15.0)
    cv = statistics.stdev(values) / statistics.fmean(values) * 100
    assert math.isclose(found["cv_pct"], round(cv, 2))
    assert gauge.spread([7.0])["cv_pct"] == 0.0


def test_a_steady_machine_passes_and_an_unsteady_one_fails_with_its_cv() -> None:
    steady = machine_steady(Truth(noise=0, speed_cv=0.01))
    assert steady["ok"] and analysis.judged(steady)
    # What the AMD EPYC host's gauge read (15-25 ms, CV 15-18 %): red, and judged.
    shaky = machine_steady(Truth(noise=0, speed_cv=0.17))
    assert not shaky["ok"] and analysis.judged(shaky)
    cv = gauge.spread([20 * (1 + 0.17 * (1 if i % 2 else -1)) for i in range(24)])["cv_pct"]
    assert 17.0 < cv < 17.8
    assert f"CV {cv:.1f} %" in shaky["detail"]
    # What the machine alone does to a figure of 3 repeats: t(2) * CV / sqrt(3).
    alone = stats.t975(2) * cv / math.sqrt(3)
    assert f"+-{alone:.0f} %" in shaky["detail"]
    # Just over the line fails; on it passes.
    assert not machine_steady(Truth(noise=0, speed_cv=0.052))["ok"]
    assert machine_steady(Truth(noise=0, speed_cv=0.048))["ok"]


def test_only_the_systems_cpus_count() -> None:
    truth = Truth(noise=0, speed_cv=0.01)
    raw = synthetic.build(truth)
    speed = raw["environment"]["speed"]
    # The load generator's CPU (0) shakes; the system's (1) is steady: the check passes.
    for s in speed["samples"]:
        if s["cpu"] == 0:
            s["ms"] *= 1.5 if s["t_s"] % 60 else 1.0
    shaky_load = gauge.summarise(speed["samples"], speed["every_s"])
    assert shaky_load["by_cpu"]["0"]["cv_pct"] > gauge.STEADY_CV_PCT
    assert machine_steady(truth, speed=shaky_load)["ok"]


def test_a_run_without_the_gauge_is_not_judged() -> None:
    found = machine_steady(Truth(noise=0), speed=None)
    assert not found["ok"] and not analysis.judged(found)
