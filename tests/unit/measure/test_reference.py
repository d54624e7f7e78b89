"""The committed reference run (reports/reference/) by its numbers: the analysis of its raw
windows gives exactly the figures its results.json (and so its report and the README) show,
and those figures are consistent with the windows they come from."""

from __future__ import annotations

import json
import statistics
from typing import Any, cast

import pytest

from loadtests.measure import analysis, stats
from loadtests.measure.schema import CONTROL, HOPS, Results, load
from services.common.settings import REPO_ROOT

REFERENCE = REPO_ROOT / "reports" / "reference"


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, Any], dict[str, Any]]:
    raw = json.loads((REFERENCE / "raw.json").read_text())
    return raw, cast(dict[str, Any], load(REFERENCE / "results.json"))


def test_the_analysis_of_the_raw_windows_is_the_committed_results(
    reference: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    raw, results = reference
    again = cast(dict[str, Any], analysis.analyse(cast(Results, raw)))
    for name, design in results["designs"].items():
        for figure in ("capacity_rps", "cpu_us_per_request", "auth_cpu_us_per_hop"):
            assert again["designs"][name][figure] == design[figure], (name, figure)
        assert again["designs"][name].get("model_error_pct") == design.get("model_error_pct")
    assert [(c["ok"], analysis.judged(c)) for c in again["checks"]] == [
        (c["ok"], analysis.judged(c)) for c in results["checks"]
    ]
    assert again["model"]["points"] == results["model"]["points"]


def test_capacity_is_the_median_of_the_runs_each_the_highest_rate_held(
    reference: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, results = reference
    for name, design in results["designs"].items():
        if name == CONTROL:
            continue
        runs = design["capacity_rps"]["runs"]
        assert design["capacity_rps"]["median"] == pytest.approx(statistics.median(runs))
        confirm = results["method"]["confirm"]
        for repeat, knee in enumerate(runs, start=1):
            by_rate: dict[float, list[bool | None]] = {}
            for w in results["windows"]:
                if w["phase"] == "capacity" and w["design"] == name and w["repeat"] == repeat:
                    by_rate.setdefault(w["offered_rps"], []).append(w.get("held"))
            # A rate held when `confirm` of its windows held and none failed (a window the
            # load generator limited, None, was measured again).
            held = [
                rate
                for rate, verdicts in by_rate.items()
                if False not in verdicts and verdicts.count(True) >= confirm
            ]
            assert max(held) == knee, (name, repeat)


def test_auth_cost_per_hop_is_the_design_slope_minus_the_controls(
    reference: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, results = reference

    def chain(name: str) -> list[dict[str, Any]]:
        return [
            w
            for w in results["windows"]
            if w["phase"] == "chain" and w["design"] == name and not w["generator_limited"]
        ]

    def slope(windows: list[dict[str, Any]]) -> float:
        return stats.fit(
            [float(w["hops"]) for w in windows], [w["cpu_us_per_request"] for w in windows]
        ).slope

    for name, design in results["designs"].items():
        if name == CONTROL:
            continue
        # The control of the same start of the services as the design's chain.
        starts = {w["config"] for w in chain(name)}
        control = [w for w in chain(CONTROL) if w["config"] in starts]
        assert {w["hops"] for w in control} == set(HOPS), name
        per_hop = design["auth_cpu_us_per_hop"]
        expected = slope(chain(name)) - slope(control)
        assert per_hop["median"] == pytest.approx(expected, abs=0.11), name
        lo, hi = per_hop["ci95"]
        assert lo <= per_hop["median"] <= hi
        assert set(design["hops"]) == {str(k) for k in HOPS}


def test_every_model_point_carries_its_error(
    reference: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, results = reference
    points = results["model"]["points"]
    assert points
    for point in points:
        error = (point["cpu_model"] - point["cpu_measured"]) / point["cpu_measured"] * 100
        assert point["cpu_error_pct"] == pytest.approx(error, abs=0.05)
        worst = results["designs"][point["design"]]["model_error_pct"]["cpu"]
        assert abs(point["cpu_error_pct"]) <= worst + 0.05
