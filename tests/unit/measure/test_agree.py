"""loadtests/measure/agree.py by numbers: two synthetic runs of one truth agree on the machine
and figure by figure as their intervals say; a run on a machine 20 % slower is told apart by
its control chain, and its absolute figures do not agree."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, cast

import pytest

from loadtests.measure import agree, analysis, gauge, stats
from loadtests.measure.schema import CONTROL, HOPS, Results
from tests.unit.measure import synthetic
from tests.unit.measure.synthetic import Truth

SLOWER = 1.2


def run(truth: Truth) -> dict[str, Any]:
    return cast(dict[str, Any], analysis.analyse(cast(Results, synthetic.build(truth))))


def slower(base: Truth) -> Truth:
    """The same system on a machine that spends SLOWER times the CPU on everything."""
    return Truth(
        seed=base.seed + 1,
        forward_base_us=base.forward_base_us * SLOWER,
        forward_per_hop_us=base.forward_per_hop_us * SLOWER,
        cpu_us={k: v * SLOWER for k, v in base.cpu_us.items()},
        capacity_rps={k: v / SLOWER for k, v in base.capacity_rps.items()},
        lap_us=base.lap_us * SLOWER,
        load_us=base.load_us * SLOWER,
    )


def test_each_figure_agrees_where_each_median_lies_in_the_others_interval() -> None:
    a, b = run(Truth()), run(Truth(seed=Truth().seed + 1))
    found = agree.agreements(a, b)
    # every design but the control, both headline figures
    assert {(r.design, r.figure) for r in found} == {
        (name, figure)
        for name in a["designs"]
        if name != CONTROL
        for figure in ("capacity_rps", "cpu_us_per_request")
    }
    for row in found:
        x, y = a["designs"][row.design][row.figure], b["designs"][row.design][row.figure]
        assert row.a == (x["median"], *x["ci95"]) and row.b == (y["median"], *y["ci95"])
        assert row.a_in_b is (y["ci95"][0] <= x["median"] <= y["ci95"][1])
        assert row.b_in_a is (x["ci95"][0] <= y["median"] <= x["ci95"][1])
    gauge = agree.speed(a, b)
    assert gauge is not None and gauge.points == len(HOPS)
    assert gauge.same_machine and gauge.ratio == pytest.approx(1.0, abs=0.03)
    # 1.3 % apart, its interval clear of 1: within the tolerance, the same machine all the same
    assert agree.Speed(1.013, (1.004, 1.022), 5).same_machine
    assert not agree.Speed(1.08, (1.06, 1.10), 5).same_machine
    assert not agree.Speed(0.92, (0.90, 0.94), 5).same_machine


def test_a_slower_machine_shows_in_the_control_and_its_figures_disagree() -> None:
    base = Truth()
    a, b = run(base), run(slower(base))
    gauge = agree.speed(a, b)
    assert gauge is not None and not gauge.same_machine
    assert gauge.ratio == pytest.approx(SLOWER, abs=0.03)
    assert gauge.ci95[0] > 1.1
    # the ratio is the geometric mean of the per-k ratios
    logs = [
        math.log(
            b["designs"][CONTROL]["hops"][str(k)]["cpu_us_per_request"]
            / a["designs"][CONTROL]["hops"][str(k)]["cpu_us_per_request"]
        )
        for k in HOPS
    ]
    assert gauge.ratio == pytest.approx(math.exp(sum(logs) / len(logs)), rel=1e-9)
    half = stats.t975(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    assert gauge.ci95[1] == pytest.approx(math.exp(sum(logs) / len(logs) + half), rel=1e-9)
    cpu = [r for r in agree.agreements(a, b) if r.figure == "cpu_us_per_request"]
    assert cpu and not any(r.agree for r in cpu)
    # Control chains at different rates say nothing of the machines.
    other = run(Truth(chain_rps=base.chain_rps / 2))
    assert agree.speed(a, other) is None
    # The spinners' laps in the CPU windows say the same, independently of the control.
    lapped = agree.lapped(a, b)
    assert lapped is not None
    ratio, (lo, hi) = lapped
    assert ratio == pytest.approx(SLOWER, rel=1e-9)
    assert lo <= ratio <= hi  # every design's lap 1.2x: no spread between designs
    same = agree.lapped(a, run(base))
    assert same is not None and same[0] == pytest.approx(1.0)
    # ... and the load generator's CPU per request, where the runs recorded it.
    assert agree.lapped(a, b, "load_cpu_us_per_request") is None  # neither did here
    loaded = Truth(load_us=300.0)
    la, lb = run(loaded), run(slower(loaded))
    load = agree.lapped(la, lb, "load_cpu_us_per_request")
    assert load is not None and load[0] == pytest.approx(SLOWER, rel=1e-9)
    text = agree.report(la, lb, ("a", "b"))
    assert (
        "The load generator's own CPU per request on its CPU in the CPU-per-request windows "
        f"cost {SLOWER:.2f}x in B" in text
    )
    assert (
        f"The spinners' lap on the system's CPUs in the CPU-per-request windows cost {SLOWER:.2f}x"
        in text
    )


def test_main_exits_by_the_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "a.json"
    base.write_text(json.dumps(synthetic.build(Truth())))
    slow = tmp_path / "b.json"
    slow.write_text(json.dumps(synthetic.build(slower(Truth()))))
    assert agree.main([str(base), str(base)]) == 0  # a run agrees with itself
    assert "12 of 12 figures agree." in capsys.readouterr().out
    assert agree.main([str(base), str(slow)]) == 1
    assert agree.main([str(base), str(tmp_path / "missing.json")]) == 2
    assert "cannot compare" in capsys.readouterr().err


def test_agreement_by_hand() -> None:
    both = agree.Agreement("x", "capacity_rps", (100.0, 90.0, 110.0), (105.0, 100.0, 120.0))
    assert both.a_in_b and both.b_in_a and both.agree
    one_way = agree.Agreement("x", "capacity_rps", (100.0, 95.0, 105.0), (110.0, 100.0, 120.0))
    assert one_way.a_in_b and not one_way.b_in_a and not one_way.agree
    # one run each (a --quick run): [x, x] intervals prove nothing, even equal
    single = agree.Agreement("x", "capacity_rps", (100.0, 100.0, 100.0), (100.0,) * 3, False)
    assert not single.agree


def test_a_figure_only_one_run_has_cannot_agree() -> None:
    a, b = run(Truth()), run(Truth())
    del b["designs"]["jwt-off"]
    b["designs"]["session"]["cpu_us_per_request"] = None
    assert agree.unmatched(a, b) == [
        "session cpu_us_per_request (only in A)",
        "jwt-off capacity_rps (only in A)",
        "jwt-off cpu_us_per_request (only in A)",
    ]
    # the same run twice: the nine figures both have agree; the three missing cannot
    assert "9 of 12 figures agree; not: session cpu_us_per_request (only in A)" in agree.report(
        a, b, ("A", "B")
    )


def test_cpu_measured_at_another_rate_is_not_compared() -> None:
    """Run B lowered the common rate to 250 req/s (plan.common_rate: a slower machine's knees):
    its CPU per request is another figure, listed apart and never compared, even where equal."""
    truth = Truth(load_us=40.0)  # both gauges recorded
    a, b = run(truth), run(truth)
    b["designs"]["session"]["cpu_us_per_request"] = {
        **a["designs"]["session"]["cpu_us_per_request"],
        "offered_rps": 250.0,
    }
    rate = a["designs"]["session"]["cpu_us_per_request"]["offered_rps"]
    found = {(r.design, r.figure) for r in agree.agreements(a, b)}
    assert ("session", "cpu_us_per_request") not in found
    assert ("session", "capacity_rps") in found and len(found) == 11
    assert agree.unmatched(a, b) == [
        f"session cpu_us_per_request (at {rate:g} req/s in A, 250 req/s in B)"
    ]
    # The gauges read in the CPU windows depend on their rate: not compared either.
    for figure in gauge.GAUGES:
        assert agree.lapped(a, a, figure) is not None
        assert agree.lapped(a, b, figure) is None
    assert "at different rates" in agree.report(a, b, ("A", "B"))
