"""loadtests/measure/analysis.py by numbers: the recorded synthetic run, then runs built from a
stated truth (tests/unit/measure/synthetic.py) where the answer is known, and runs built to turn
each self-check red."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from loadtests import microbench
from loadtests.measure import analysis, stats
from loadtests.measure.schema import CONTROL, Check, Results, load
from tests.unit.measure import synthetic
from tests.unit.measure.synthetic import Truth

CHECKS = {
    "control_cheapest",
    "same_check_agree",
    "session_hop_vs_jwt",
    "capacity_cross_check",
    "intervals_tight",
    "model",
    "common_rate_inside",
    "machine_steady",
}


def analysed(truth: Truth | None = None, **edit: Any) -> dict[str, Any]:
    """The analysis of a synthetic run (noiseless unless a truth says otherwise)."""
    raw = synthetic.build(truth or Truth(noise=0))
    for design, fields in edit.items():
        raw["designs"][design.replace("_", "-")].update(fields)
    return cast(dict[str, Any], analysis.analyse(cast(Results, raw)))


def check(results: dict[str, Any], name: str) -> Check:
    (found,) = [c for c in results["checks"] if c["name"] == name]
    return cast(Check, found)


def advice(results: dict[str, Any], topic: str) -> tuple[str, ...]:
    """The designs one "Which design when" sentence names, in its order."""
    found = analysis.advise(results, analysis.chain_fits(results))
    (one,) = [a for a in found if a.topic == topic]
    return one.designs


@pytest.fixture(scope="module")
def recorded() -> Results:
    return load(synthetic.RECORDED)


@pytest.fixture(scope="module")
def result(recorded: Results) -> dict[str, Any]:
    return cast(dict[str, Any], analysis.analyse(recorded))


def test_the_recorded_run_passes_every_self_check(result: dict[str, Any]) -> None:
    assert {c["name"] for c in result["checks"]} == CHECKS
    assert [c["name"] for c in result["checks"] if not c["ok"]] == []


def test_analysis_is_pure_and_idempotent(recorded: Results, result: dict[str, Any]) -> None:
    before = copy.deepcopy(recorded)
    again = analysis.analyse(cast(Results, result))
    assert recorded == before  # the input is left alone
    assert again == result  # re-analysing an analysed file changes nothing
    assert "comparisons" not in recorded


def test_capacity_and_cpu_are_the_runs_median_and_t_interval(
    recorded: Results, result: dict[str, Any]
) -> None:
    for name, design in result["designs"].items():
        raw = cast(dict[str, Any], recorded["designs"][name])
        if name == CONTROL:
            assert design["capacity_rps"] is None and design["cpu_us_per_request"] is None
            continue
        for figure in ("capacity_rps", "cpu_us_per_request"):
            expected = stats.interval(raw[figure]["runs"])
            assert design[figure]["median"] == pytest.approx(expected["median"], abs=1e-3)
            assert design[figure]["ci95"] == pytest.approx(expected["ci95"], abs=1e-3)
        assert design["cpu_us_per_request"]["offered_rps"] == Truth().common_rps


def test_marginal_slope_is_the_cpu_of_one_more_request_in_us() -> None:
    truth = Truth(noise=0)
    design = analysed(truth)["designs"]["session"]
    assert design["marginal"]["slope_us"] == pytest.approx(
        truth.knee_busy * 1e6 / truth.capacity_rps["session"], abs=0.1
    )
    assert design["marginal"]["intercept_ms_per_s"] == pytest.approx(15.0, abs=0.01)


def test_auth_per_hop_is_the_designs_slope_minus_the_controls() -> None:
    # jwt-push's chain: the control's slope + 40 us per hop; with noise and without.
    forty = {**Truth().chain_check_us, "jwt-push": (40.0, 40.0)}
    noisy = analysed(Truth(chain_check_us=forty))["designs"]["jwt-push"]["auth_cpu_us_per_hop"]
    lo, hi = noisy["ci95"]
    assert lo <= 40 <= hi
    assert noisy["median"] == pytest.approx(40, abs=hi - lo)
    exact = analysed(Truth(noise=0, chain_check_us=forty))["designs"]
    assert exact["jwt-push"]["auth_cpu_us_per_hop"]["median"] == pytest.approx(40, abs=0.1)
    # the session's hop: its check (120) and its store operation (1 x 30 us)
    assert exact["session"]["auth_cpu_us_per_hop"]["median"] == pytest.approx(150, abs=0.1)
    assert exact[CONTROL]["auth_cpu_us_per_hop"] is None


def test_comparisons_are_ratios_of_means_judged_by_overlap(result: dict[str, Any]) -> None:
    designs = result["designs"]
    by_pair = {(c["figure"], c["a"], c["b"]): c for c in result["comparisons"]}
    # every design against session, and against jwt-push, once per pair and figure
    assert len(by_pair) == len(result["comparisons"]) == 2 * (5 + 4)
    assert ("capacity_rps", "session", "jwt-push") not in by_pair
    for (figure, a, b), comparison in by_pair.items():
        value, ci = stats.ratio(designs[a][figure]["runs"], designs[b][figure]["runs"])
        assert comparison["ratio"] == pytest.approx(value, abs=1e-4)
        assert comparison["ci95"] == pytest.approx(ci, abs=1e-4)
        apart = not stats.overlap(designs[a][figure]["ci95"], designs[b][figure]["ci95"])
        assert comparison["distinguishable"] is apart
    assert by_pair["capacity_rps", "jwt-push", "session"]["distinguishable"]
    assert by_pair["capacity_rps", "jwt-push", "session"]["ratio"] == pytest.approx(2.32, abs=0.01)
    assert not by_pair["capacity_rps", "jwt-off", "jwt-push"]["distinguishable"]


def _typed(runs: dict[str, list[float]], kind: str = "post") -> dict[str, Any]:
    """Designs whose `kind` request type measured `runs` (as run.py records them)."""
    return {
        name: {kind: {"cpu_us_per_request": {"runs": values, "offered_rps": 100.0}}}
        for name, values in runs.items()
    }


def test_a_request_types_spread_is_the_dearest_over_the_cheapest_judged_by_overlap() -> None:
    runs = {
        "a": [1000.0, 1010.0, 990.0],
        "b": [2000.0, 2040.0, 1960.0],
        "c": [1005.0, 1020.0, 985.0],  # inside a's interval
        "control": [],  # measured no such request: not rated
    }
    spread = analysis.request_type_spread(_typed(runs), "post")
    assert spread is not None
    assert (spread.cheapest, spread.dearest) == ("a", "b")
    value, ci = stats.ratio(runs["b"], runs["a"])
    assert spread.ratio == pytest.approx(value, abs=1e-4) == pytest.approx(2.0, abs=1e-4)
    assert spread.ci95 == pytest.approx(ci, abs=1e-4)
    assert spread.ci95[0] > 1.9 and spread.ci95[1] < 2.1
    assert spread.distinguishable and spread.any_pair
    assert spread.ties == ("c",) and spread.single == ()


def test_a_request_types_spread_claims_nothing_where_intervals_overlap_or_are_missing() -> None:
    # 10-15 % apart, as single windows differed from run to run, and overlapping: no claim.
    overlapping = analysis.request_type_spread(
        _typed(
            {"jwt-push": [1800.0, 2100.0, 1650.0], "jwt-off": [2150.0, 1850.0, 2000.0]}, "login"
        ),
        "login",
    )
    assert overlapping is not None
    assert not overlapping.distinguishable and not overlapping.any_pair
    # Designs of one run are left out, and named; fewer than two left: nothing to say.
    assert analysis.request_type_spread(_typed({"a": [1000.0], "b": [3000.0]}), "post") is None
    mixed = analysis.request_type_spread(
        _typed({"a": [1000.0], "b": [100.0, 101.0, 99.0], "c": [300.0, 301.0, 299.0]}), "post"
    )
    assert mixed is not None and mixed.single == ("a",)
    assert (mixed.cheapest, mixed.dearest) == ("b", "c") and mixed.distinguishable


def test_a_wide_design_between_two_apart_is_no_proof_that_no_two_differ() -> None:
    """The cheapest and the dearest by mean overlap (the cheapest's interval is wide), yet the
    other two are apart: 'no two are distinguishable' would be false."""
    runs = {"a": [60.0, 100.0, 140.0], "b": [149.0, 150.0, 151.0], "c": [119.0, 120.0, 121.0]}
    spread = analysis.request_type_spread(_typed(runs), "post")
    assert spread is not None
    assert (spread.cheapest, spread.dearest) == ("a", "b")
    assert not spread.distinguishable and spread.any_pair
    assert "no two designs" not in spread.sentence


def test_the_dearest_is_the_dearest_by_the_mean_its_ratio_is_of() -> None:
    """a's median is the lowest but its mean (120) the highest: ordered by mean, the ratio of
    the dearest to the cheapest is never below 1."""
    runs = {"a": [100.0, 100.0, 160.0], "b": [110.0, 111.0, 112.0]}
    spread = analysis.request_type_spread(_typed(runs), "post")
    assert spread is not None and (spread.cheapest, spread.dearest) == ("b", "a")
    assert spread.ratio == pytest.approx(120.0 / 111.0, abs=1e-4)


def test_a_file_of_single_write_windows_reads_as_one_run_each() -> None:
    old = {"session": {"post": {"offered_rps": 100.0, "cpu_us_per_request": 2106.0}}}
    figure = analysis.type_cpu(old["session"]["post"])
    assert figure == {
        "median": 2106.0,
        "ci95": [2106.0, 2106.0],
        "runs": [2106.0],
        "offered_rps": 100.0,
    }


def test_one_run_is_never_distinguishable_nor_tight() -> None:
    result = analysed(Truth(noise=0.01, repeats=1))
    assert result["comparisons"]
    assert not any(c["distinguishable"] for c in result["comparisons"])
    assert not check(result, "intervals_tight")["ok"]
    assert "one run, no interval" in check(result, "intervals_tight")["detail"]


def test_checks_that_need_intervals_are_not_judged_on_one_run() -> None:
    """One run per figure (--quick): the checks that compare intervals are neither passed nor
    failed; those that judge the chains' fits (several windows each) still are."""
    result = analysed(Truth(noise=0.01, repeats=1))
    for name in ("intervals_tight", "same_check_agree"):
        found = check(result, name)
        assert found["judged"] is False and found["ok"] is False, found
    for name in ("control_cheapest", "session_hop_vs_jwt"):
        assert check(result, name)["judged"] is True, name
    # Repeated figures are judged, whatever their verdict.
    assert all(c["judged"] for c in analysed(Truth(noise=0.01))["checks"])


def test_a_figure_left_with_one_run_fails_a_run_of_repeats() -> None:
    """Five repeats asked, one left (the others held nothing, or the generator limited them):
    that run failed, and says so; a figure missing altogether fails too."""
    result = analysed(
        Truth(noise=0.01),
        jwt_push={"capacity_rps": {"runs": [1500.0]}},
        jwt_off={"cpu_us_per_request": {"runs": [700.0], "offered_rps": 300.0}},
    )
    for name in ("intervals_tight", "same_check_agree"):
        found = check(result, name)
        assert found["judged"] is True and found["ok"] is False, found
    missing = analysed(Truth(noise=0.01), jwt_cookie={"capacity_rps": None})
    found = check(missing, "same_check_agree")
    assert found["judged"] is True and found["ok"] is False, found


def test_a_wide_interval_fails_even_beside_figures_of_one_run() -> None:
    result = analysed(
        Truth(noise=0.01, repeats=1), session={"capacity_rps": {"runs": [600.0, 700.0, 800.0]}}
    )
    found = check(result, "intervals_tight")
    assert found["judged"] is True and found["ok"] is False
    assert "session capacity_rps +-" in found["detail"]


def test_jwt_designs_apart_fail_even_beside_figures_of_one_run() -> None:
    """Two repeated JWT capacities that do not overlap are a judged failure, though the
    others have one run."""
    result = analysed(
        Truth(noise=0.01, repeats=1),
        jwt_push={"capacity_rps": {"runs": [1500.0, 1510.0, 1520.0]}},
        jwt_off={"capacity_rps": {"runs": [2000.0, 2010.0, 2020.0]}},
    )
    found = check(result, "same_check_agree")
    assert found["judged"] is True and found["ok"] is False
    assert "jwt-push and jwt-off do not overlap" in found["detail"]


def test_sentences_give_no_interval_for_figures_of_one_run() -> None:
    """A single run's ci95 is [x, x]: the sentences say there is no interval instead of
    printing it, and claim no difference."""
    result = analysed(Truth(noise=0.01, repeats=1))
    sentences = {a.topic: a.sentence for a in advise_of(result)}
    for topic in ("capacity", "cpu"):
        assert "95 % CI" not in sentences[topic], sentences[topic]
        assert stats.ONE_RUN in sentences[topic], sentences[topic]
    repeated = {a.topic: a.sentence for a in advise_of(analysed(Truth(noise=0.01)))}
    assert all("95 % CI" in repeated[topic] for topic in ("capacity", "cpu")), repeated


def test_a_design_that_served_nothing_is_reported_not_compared() -> None:
    result = analysed(hybrid={"capacity_rps": {"runs": [0.0, 0.0, 0.0]}})
    assert result["designs"]["hybrid"]["capacity_rps"]["median"] == 0.0
    assert not [
        c
        for c in result["comparisons"]
        if "hybrid" in (c["a"], c["b"]) and c["figure"] == "capacity_rps"
    ]
    assert advice(result, "capacity")[-1] == "hybrid"
    assert not check(result, "capacity_cross_check")["ok"]


def test_the_noiseless_run_passes_every_check_once_the_jwt_designs_are_equal() -> None:
    # Without noise every interval is a point, so jwt-off's 1,580 req/s and jwt-push's 1,550
    # are told apart, as they should be.
    assert [c["name"] for c in analysed()["checks"] if not c["ok"]] == ["same_check_agree"]
    base = Truth()
    jwts = ("jwt-push", "jwt-off", "jwt-cookie")
    capacity = {**base.capacity_rps, **dict.fromkeys(jwts, 1550.0)}
    cpu = {**base.cpu_us, **dict.fromkeys(jwts, 700.0)}
    result = analysed(Truth(noise=0, capacity_rps=capacity, cpu_us=cpu))
    assert [c["name"] for c in result["checks"] if not c["ok"]] == []


def test_control_cheapest_turns_red_when_the_control_costs_more_at_one_k() -> None:
    raw = synthetic.build(Truth(noise=0))
    raw["designs"][CONTROL]["hops"]["3"]["cpu_us_per_request"] = 5000.0
    result = cast(dict[str, Any], analysis.analyse(cast(Results, raw)))
    red = check(result, "control_cheapest")
    assert not red["ok"]
    assert "k=3:" in red["detail"] and "< 5,000 - 0" in red["detail"]
    assert "k=2:" not in red["detail"]


def test_control_cheapest_allows_the_chains_scatter() -> None:
    """A design level with the control (a cached JWT check) is not a violation, however its
    medians fall, while it stays within the two chains' scatter."""
    raw = synthetic.build(Truth(noise=0.02))
    result = cast(dict[str, Any], analysis.analyse(cast(Results, raw)))
    assert check(result, "control_cheapest")["ok"]


def test_same_check_agree_turns_red_when_one_jwt_design_serves_less() -> None:
    assert check(analysed(Truth(noise=0.01)), "same_check_agree")["ok"]
    result = analysed(Truth(noise=0.01, capacity_rps={**Truth().capacity_rps, "jwt-off": 1200.0}))
    red = check(result, "same_check_agree")
    assert not red["ok"]
    assert "capacity_rps" in red["detail"] and "do not overlap" in red["detail"]
    # and the jwt designs agreeing in everything but auth per hop: that alone turns it red
    slower = {**Truth().chain_check_us, "jwt-cookie": (90.0, 90.0)}
    assert not check(analysed(Truth(noise=0.01, chain_check_us=slower)), "same_check_agree")["ok"]


def with_read_row(truth: Truth, read: float | None) -> dict[str, Any]:
    """The analysis of a synthetic run whose micro-benchmark made the paced row of the Cookie
    field's read (None: a run from before the row, which has none)."""
    raw = synthetic.build(truth)
    if read is not None:
        name = microbench.paced(microbench.COOKIE_READ)
        row = {"name": name, "wall_us": read, "cpu_us": read, "baseline": None}
        raw["method"]["microbench"] = [row]
    return cast(dict[str, Any], analysis.analyse(cast(Results, raw)))


def test_same_check_agree_takes_out_the_cookie_read_the_micro_benchmark_priced() -> None:
    """jwt-cookie's check is jwt-push's plus the Cookie field's read (25 us a check): 50 us
    more CPU per GET /orders (two checks), 25 us more a hop; capacity alike (under 2 % at the
    knee, where the read costs its back-to-back figure)."""
    base, read = Truth(), 25.0
    price = cast(float, base.check_us["jwt-cookie"]) + read
    cookie = replace(
        base,
        noise=0.01,
        cpu_us={**base.cpu_us, "jwt-cookie": base.cpu_us["jwt-push"] + 2 * read},
        chain_check_us={**base.chain_check_us, "jwt-cookie": (30.0 + read, 30.0 + read)},
        check_us={**base.check_us, "jwt-cookie": price},
    )
    result = with_read_row(cookie, read)
    prices = analysis.carrier_prices(result["designs"], result["method"])
    assert prices == {"jwt-push": 0.0, "jwt-off": 0.0, "jwt-cookie": pytest.approx(read)}
    assert check(result, "same_check_agree")["ok"]
    # The same run with the read left unpriced (jwt-cookie's check_us the JWT's alone):
    # its CPU per request and per hop are apart from the others'.
    unpriced = with_read_row(replace(cookie, check_us=base.check_us), read)
    red = check(unpriced, "same_check_agree")
    assert not red["ok"]
    figures = re.split(
        r"(?=(?:capacity_rps|cpu_us_per_request|auth_cpu_us_per_hop): )", red["detail"]
    )
    apart = {part.split(":")[0] for part in figures if "do not overlap" in part}
    assert apart == {"cpu_us_per_request", "auth_cpu_us_per_hop"}
    # A run whose micro-benchmark has no row for the read prices nothing.
    old = with_read_row(cookie, None)
    assert analysis.carrier_prices(old["designs"], old["method"]) == {}
    assert not check(old, "same_check_agree")["ok"]


def test_a_price_comes_out_of_each_figure_by_its_checks() -> None:
    cpu = {"median": 750.0, "ci95": [740.0, 760.0]}
    assert analysis.less_price("cpu_us_per_request", cpu, 25.0)["ci95"] == [690.0, 710.0]
    hop = {"median": 55.0, "ci95": [45.0, 65.0]}
    assert analysis.less_price("auth_cpu_us_per_hop", hop, 25.0)["ci95"] == [20.0, 40.0]


@pytest.mark.parametrize(
    ("check_us", "why"),
    [
        ({"session": 500.0}, "the micro-benchmark says a session check costs 4x more"),
        ({"session": 20.0, "jwt-push": 120.0}, "the micro-benchmark says the JWT is dearer"),
        ({"session": None}, "no micro-benchmark figure"),
    ],
)
def test_session_hop_vs_jwt_turns_red_when_the_micro_benchmark_disagrees(
    check_us: dict[str, float | None], why: str
) -> None:
    result = analysed(Truth(noise=0, check_us={**Truth().check_us, **check_us}))
    assert not check(result, "session_hop_vs_jwt")["ok"], why


def test_session_hop_vs_jwt_expects_the_checks_and_the_stores_operation() -> None:
    detail = check(analysed(), "session_hop_vs_jwt")["detail"]
    # chain: (120 + 1 x 30) - 30 = 120 us per hop; expected: the micro-benchmark's checks,
    # 120 - 20 = 100 us, and the store's one more operation per hop at 30 us: 130 us
    assert "costs 120 us more" in detail and "expected 130 us" in detail
    assert "differ by 100 us" in detail and "1.00 more operations per hop cost 30 us" in detail
    assert "0.92x" in detail


def test_session_hop_vs_jwt_fails_where_its_interval_includes_zero() -> None:
    """A noisy chain (30 % per figure): the measured difference's interval includes 0, so the
    run has not shown a session hop dearer. That is a failed check, judged, not an unjudged
    one, and its detail does not say otherwise."""
    result = analysed(Truth(noise=0.3))
    found = check(result, "session_hop_vs_jwt")
    fits = analysis.chain_fits(cast(Results, result))
    session, jwt = fits["session"], fits["jwt-push"]
    assert session is not None and jwt is not None
    _, (lo, hi) = stats.difference_of_slopes(session, jwt)
    assert lo < 0 < hi
    assert found["ok"] is False and analysis.judged(found) is True
    assert "cannot judge" not in found["detail"]


def test_session_hop_vs_jwt_cannot_judge_without_the_stores_price() -> None:
    raw = synthetic.build(Truth(noise=0))
    for window in raw["windows"]:  # the session store's CPU was not recorded anywhere
        window["cpu_by_process"].pop("session_store", None)
    found = check(cast(dict[str, Any], analysis.analyse(cast(Results, raw))), "session_hop_vs_jwt")
    assert not found["ok"] and "not measured" in found["detail"]


def test_session_hop_vs_jwt_counts_the_stores_cpu_on_both_sides() -> None:
    """A dear store makes a session hop dear in the chain and in the expectation alike; were
    the store's CPU left out of the expectation, 420 us against 100 us would be red (4.2x)."""
    dear = analysed(Truth(noise=0, store_us_per_op=330.0))
    found = check(dear, "session_hop_vs_jwt")
    assert "costs 420 us more" in found["detail"] and "expected 430 us" in found["detail"]
    assert found["ok"]


@pytest.mark.parametrize("busy", [0.5, 1.3])
def test_capacity_cross_check_turns_red_when_capacity_and_cpu_disagree(busy: float) -> None:
    result = analysed(Truth(noise=0, knee_busy=busy))
    red = check(result, "capacity_cross_check")
    assert not red["ok"]
    assert f"{busy:.2f} OUT" in red["detail"]


def test_capacity_cross_check_uses_the_window_closest_below_the_knee() -> None:
    raw = synthetic.build(Truth(noise=0))
    raw["windows"] = [
        w for w in raw["windows"] if not (w["phase"] == "capacity" and w["offered_rps"] == 670.0)
    ]
    result = cast(dict[str, Any], analysis.analyse(cast(Results, raw)))
    # the knee's own window is gone: the next below, at 0.95 x 670, costs 1 % more CPU
    assert "(at 636 req/s)" in check(result, "capacity_cross_check")["detail"]


def test_intervals_tight_turns_red_on_a_wide_interval() -> None:
    result = analysed(session={"capacity_rps": {"runs": [600.0, 700.0, 800.0]}})
    red = check(result, "intervals_tight")
    assert not red["ok"]
    assert "session capacity_rps +-" in red["detail"]


def test_model_check_turns_red_when_a_check_costs_far_more_than_measured() -> None:
    dear = {**Truth().check_us, "jwt-push": 200.0, "jwt-off": 200.0, "jwt-cookie": 200.0}
    result = analysed(Truth(noise=0, check_us=dear))
    red = check(result, "model")
    assert not red["ok"]
    assert result["designs"]["jwt-push"]["model_error_pct"]["cpu"] > 15


def test_advice_names_the_designs_the_numbers_pick() -> None:
    truth = Truth(noise=0)
    result = analysed(truth)
    assert advice(result, "capacity") == ("jwt-off", "session")
    assert advice(result, "cpu") == ("jwt-off", "session")
    assert advice(result, "per_hop") == ("session", "session-cached")
    assert advice(result, "distance")[0] == "session"
    # the slowest revoking design (jwt-cookie, 56 ms p99), then the one that never revoked
    assert advice(result, "revocation") == ("jwt-cookie", "jwt-off")
    sentence = next(s for s in result["advice"] if s.startswith("A logged-out credential"))
    assert "within 56.0 ms" in sentence and "each of the 5 designs" in sentence
    # Only designs that never revoked: they are named all the same.
    alone = {"jwt-off": {"revocation_lag_ms": None, "revoked_until_exp": True}}
    assert analysis._advise_revocation(alone) is not None
    assert analysis._advise_revocation(alone).designs == ("jwt-off",)  # type: ignore[union-attr]
    assert analysis._advise_revocation({"control": {"revocation_lag_ms": None}}) is None
    # One design measured, one whose logouts all failed (neither a lag nor the flag): named.
    lag = {"p50": 1.0, "p99": 2.0, "max": 3.0, "samples": 10}
    one = analysis._advise_revocation(
        {
            "session": {"kind": "session", "revocation_lag_ms": lag, "revoked_until_exp": False},
            "jwt-push": {"kind": "jwt", "revocation_lag_ms": None},
            "control": {"kind": "none", "revocation_lag_ms": None},
        }
    )
    assert one is not None and one.designs == ("session",)
    assert "the one design whose lag was measured" in one.sentence
    assert one.sentence.endswith("not measured: jwt-push.")
    assert advice(result, "credential") == ("jwt-cookie", "session")
    assert len(result["advice"]) == 6


def test_advice_follows_the_numbers_when_they_reverse() -> None:
    base = Truth()
    capacity = {**base.capacity_rps, "session": 1580.0, "jwt-off": 670.0}
    cpu = {**base.cpu_us, "session": 690.0, "jwt-off": 1480.0}
    checks = {**base.chain_check_us, "session": (5.0, 5.0), "session-cached": (200.0, 200.0)}
    ops = {"session-cached": 1.0}  # the cache misses every time, the plain session never asks
    lag = {**base.revocation_ms, "session": None, "jwt-off": (1.5, 4.0, 9.0)}
    result = analysed(
        Truth(
            noise=0,
            capacity_rps=capacity,
            cpu_us=cpu,
            chain_check_us=checks,
            ops_per_check=ops,
            revocation_ms=lag,
        )
    )
    assert advice(result, "capacity") == ("session", "jwt-off")
    assert advice(result, "cpu") == ("session", "jwt-off")
    assert advice(result, "per_hop") == ("session-cached", "session")
    assert advice(result, "distance")[0] == "session-cached"
    assert advice(result, "revocation") == ("jwt-cookie", "session")


def test_advice_lists_what_cannot_be_told_from_the_best() -> None:
    result = analysed(Truth())  # noisy: the three JWT designs overlap
    assert advice(result, "capacity") == ("jwt-off", "jwt-push", "jwt-cookie", "session")
    sentences = analysis.advise(result, analysis.chain_fits(result))
    assert result["advice"] == [a.sentence for a in sentences]


def test_cli_reanalyses_a_file_in_place(tmp_path: Path, recorded: Results) -> None:
    path = tmp_path / "results.json"
    path.write_text(synthetic.RECORDED.read_text())
    assert analysis.main([str(path)]) == 0
    assert json.loads(path.read_text()) == json.loads(json.dumps(analysis.analyse(recorded)))


def test_the_recorded_fixture_is_the_default_synthetic_run() -> None:
    """Regenerate with `python -m tests.unit.measure.synthetic` after changing the truth."""
    assert json.loads(synthetic.RECORDED.read_text()) == json.loads(json.dumps(synthetic.build()))


def test_the_common_rate_must_be_well_inside_every_capacity() -> None:
    assert check(analysed(), "common_rate_inside")["ok"]
    base = Truth()
    # session's capacity at 450 req/s: the common 300 req/s is 67 % of it
    near = analysed(Truth(noise=0, capacity_rps={**base.capacity_rps, "session": 450.0}))
    red = check(near, "common_rate_inside")
    assert not red["ok"]
    assert "capacity of session" in red["detail"] and "session 67% of 450" in red["detail"]


def test_the_credential_sentence_names_the_largest_and_the_smallest() -> None:
    result = analysed()
    assert advice(result, "credential") == ("jwt-cookie", "session")  # the first of equals
    (sentence,) = [s for s in result["advice"] if "bytes of credential" in s]
    assert sentence == (
        "Every request carries 735 bytes of credential headers with jwt-cookie, "
        "6.3x the 116 bytes of session."
    )
    bigger = analysed(session_cached={"credential_bytes": 900})
    assert advice(bigger, "credential") == ("session-cached", "session")


def test_no_credential_sentence_without_two_different_sizes() -> None:
    same: dict[str, Any] = {name: {"credential_bytes": 500} for name in Truth().credential_bytes}
    assert "credential" not in {a.topic for a in advise_of(analysed(None, **same))}
    missing: dict[str, Any] = {n: {"credential_bytes": None} for n in Truth().credential_bytes}
    assert "credential" not in {a.topic for a in advise_of(analysed(None, **missing))}


def advise_of(results: dict[str, Any]) -> list[analysis.Advice]:
    return analysis.advise(results, analysis.chain_fits(results))


def test_repeats_that_stop_on_one_rate_reach_to_the_rate_that_did_not_hold() -> None:
    """Five searches that all held 2,320 req/s and failed 2,436: the knee lies between, not at
    2,320 with certainty."""
    same = {"median": 0.0, "ci95": [], "runs": [2320.0] * 5, "not_held": [2436.0] * 5}
    figure = analysis._interval(same)
    assert figure is not None and figure["ci95"] == [2320.0, 2436.0]
    assert figure["not_held"] == [2436.0] * 5
    # a spread wider than the last step keeps its t interval; a search that never failed
    # (None) adds nothing
    spread = {
        "runs": [2000.0, 2200.0, 2400.0, 2600.0, 2800.0],
        "not_held": [2100.0, 2310.0, 2520.0, 2730.0, None],
    }
    wide = analysis._interval(spread)
    assert wide is not None
    assert wide["ci95"] == [pytest.approx(2007.4, abs=0.1), pytest.approx(2792.6, abs=0.1)]
    assert analysis._interval({"runs": [2320.0], "not_held": [2436.0]})["ci95"] == [2320.0] * 2  # type: ignore[index]
