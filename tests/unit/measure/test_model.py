"""loadtests/measure/model.py by numbers: on runs built from a stated truth the parts come back
exactly, and each design's error is the one its construction implies."""

from __future__ import annotations

from typing import Any, cast

import pytest

from loadtests.measure import analysis, model
from loadtests.measure.schema import CONTROL, HOPS, Results
from tests.unit.measure import synthetic
from tests.unit.measure.synthetic import Truth


def analysed(truth: Truth) -> dict[str, Any]:
    return cast(dict[str, Any], analysis.analyse(cast(Results, synthetic.build(truth))))


def test_the_parts_are_measured_apart_and_come_back_exactly() -> None:
    parts = analysed(Truth(noise=0, store_us_per_op=45.0))["model"]["parts"]
    forwarding = parts["forwarding"]
    assert (forwarding["cpu_base_us"], forwarding["cpu_us_per_hop"]) == (500.0, 300.0)
    assert (forwarding["p50_base_ms"], forwarding["p50_ms_per_hop"]) == (1.0, 0.5)
    assert parts["store"]["cpu_us_per_op"] == 45.0
    assert parts["store"]["cpu_from"] == "median over cpu windows"  # not the chain's
    assert parts["store"]["rtt_ms"] == 0.1
    # the hybrid: a cached session at the edge, the bearer JWT's check at every relay
    assert parts["checks"]["hybrid"] == {
        "edge_us": 8.0,
        "edge_from": "session-cached",
        "relay_us": 20.0,
        "relay_from": "jwt-push",
    }
    assert parts["checks"][CONTROL]["edge_us"] == parts["checks"][CONTROL]["relay_us"] == 0.0


def test_a_design_whose_parts_are_exact_has_no_error() -> None:
    # the session's in-process check (120 us) is what its chain pays beside the store's CPU
    result = analysed(Truth(noise=0))
    points = [p for p in result["model"]["points"] if p["design"] == "session"]
    # k = 1 calibrates the edge: not validated on; every distance point is, from the others
    assert [(p["kind"], p["x"]) for p in points] == [
        *(("chain", float(k)) for k in HOPS if k > 1),
        *(("distance", added) for added in (0.0, 1.0, 2.0, 5.0)),
    ]
    assert max(abs(p["cpu_error_pct"]) for p in points) < 0.02
    assert max(abs(p["p50_error_pct"]) for p in points) < 0.05
    far = points[-1]  # 5 ms added: two store calls in series, each 5.0 ms further away
    nearest = 1.0 + 0.5 + 0.240 + 2 * 0.1
    assert far["p50_model"] == pytest.approx(nearest + 2 * 5.0, abs=1e-3)
    # the edge: the gateway's own check of the session (120 us), read off k = 1
    assert result["model"]["parts"]["edges"]["session"]["cpu_us"] == pytest.approx(120.0, abs=0.1)
    assert result["designs"]["session"]["model_error_pct"] == {"cpu": 0.0, "p50": 0.0}


@pytest.mark.parametrize("chain_us", [30.0, 60.0, 200.0])
def test_a_check_the_micro_benchmark_underestimates_shows_in_the_error(chain_us: float) -> None:
    """jwt-push's micro-benchmark says 20 us a check; its chain pays `chain_us` at the edge
    and at every relay. The edge is read off k = 1 (2 * chain_us - 20 beyond the forwarding
    and one relay's 20); the relays keep the 20 (nothing is tuned to the validated points), so
    the error grows with k as the construction says."""
    truth = Truth(noise=0, chain_check_us={**Truth().chain_check_us, "jwt-push": (chain_us,) * 2})
    result = analysed(truth)

    def error(measured: float, predicted: float) -> float:
        return abs(predicted - measured) / measured * 100

    edge_us = 2 * chain_us - 20
    validated = [k for k in HOPS if k > 1]
    cpu = max(
        error(truth.chain_cpu("jwt-push", k), 500 + 300 * k + edge_us + 20 * k) for k in validated
    )
    p50 = max(
        error(truth.chain_p50("jwt-push", k), 1.0 + 0.5 * k + (edge_us + 20 * k) / 1000)
        for k in validated
    )
    errors = result["designs"]["jwt-push"]["model_error_pct"]
    assert errors["cpu"] == pytest.approx(cpu, abs=0.06)
    assert errors["p50"] == pytest.approx(p50, abs=0.06)
    model_check = next(c for c in result["checks"] if c["name"] == "model")
    assert model_check["ok"] is (cpu <= 15 and p50 <= 20)


def test_a_design_without_a_check_figure_is_not_modelled() -> None:
    truth = Truth(noise=0, check_us={**Truth().check_us, "session-cached": None})
    result = analysed(truth)
    assert "model_error_pct" not in result["designs"]["session-cached"]
    assert result["model"]["parts"]["checks"]["session-cached"] is None
    assert any(n.startswith("session-cached: its check cost") for n in result["model"]["notes"])
    # the hybrid's edge falls back to its own figure
    assert result["model"]["parts"]["checks"]["hybrid"]["edge_from"] == "hybrid"
    model_check = next(c for c in result["checks"] if c["name"] == "model")
    assert not model_check["ok"]
    assert "not modelled: session-cached" in model_check["detail"]


def test_a_check_measured_below_zero_costs_nothing_in_the_model() -> None:
    """A cached JWT check paced at the chain's rate read -1.3 us in a real run (about a
    microsecond, less the empty loop's scatter): the model prices it at 0, never below."""
    truth = Truth(noise=0, check_us={**Truth().check_us, "jwt-push": -1.3})
    result = analysed(truth)
    checks = result["model"]["parts"]["checks"]
    assert checks["jwt-push"]["edge_us"] == checks["jwt-push"]["relay_us"] == 0.0
    assert checks["hybrid"]["relay_us"] == 0.0  # the hybrid's relays run jwt-push's check
    assert result["designs"]["jwt-push"]["check_us"] == -1.3  # the measured figure is kept
    assert min(v for c in checks.values() if c for k, v in c.items() if k.endswith("_us")) >= 0


def test_no_control_chain_no_model() -> None:
    raw = synthetic.build(Truth(noise=0))
    raw["windows"] = [w for w in raw["windows"] if w["design"] != CONTROL]
    built = model.build(raw)
    assert built.parts == {} and built.points == [] and built.errors == {}
    assert built.notes == ["no control chain over two hop counts: no forwarding part, no model"]


def test_windows_the_load_generator_limited_are_left_out() -> None:
    raw = synthetic.build(Truth(noise=0))
    for window in raw["windows"]:
        if window["design"] == CONTROL and window["hops"] == 5:
            window.update(generator_limited=True, cpu_us_per_request=9999.0)
    line = model.chain_fit(raw["windows"], CONTROL)
    assert line is not None
    assert (line.n, round(line.slope, 6), round(line.intercept, 6)) == (8, 300.0, 500.0)


def test_login_windows_do_not_price_the_store_commands_of_a_check() -> None:
    # A login's session-store commands (a Lua script reserving a failure, a SET) cost more
    # each than a check's GET: the part the model multiplies by the checks' commands.
    raw = synthetic.build(Truth(noise=0, store_us_per_op=45.0))
    for design in ("session", "jwt-push"):
        raw["windows"].append(
            {
                "phase": "login",
                "design": design,
                "repeat": 1,
                "offered_rps": 50.0,
                "served_rps": 50.0,
                "p50_ms": 3.0,
                "p99_ms": 6.0,
                "failures": 0,
                "cpu_us_per_request": 3000.0,
                "cpu_ms_per_s": 150.0,
                "cpu_by_process": {"auth": 2400.0, "session_store": 900.0},
                "store_ops_per_request": 3.0,
                "generator_limited": False,
            }
        )
    store = analysis.analyse(cast(Results, raw))["model"]["parts"]["store"]
    assert store["cpu_us_per_op"] == 45.0
    assert store["cpu_from"] == "median over cpu windows"


def test_the_stores_cost_per_operation_is_read_at_the_common_rate_not_at_the_knee() -> None:
    """Near the knee the store batches commands and each costs less (10 us here against 45 at
    the common rate): the capacity windows, most of the store's windows, do not set the part
    the model prices a chain's commands with; without windows at the common rate they are
    what there is."""
    raw = synthetic.build(Truth(noise=0, store_us_per_op=45.0))
    for window in raw["windows"]:
        if window["phase"] == "capacity" and window["store_ops_per_request"] >= 0.5:
            ops = window["store_ops_per_request"]
            window["cpu_by_process"]["session_store"] = 10.0 * ops
    counted = [w for w in raw["windows"] if w["store_ops_per_request"] >= 0.5]
    phases = [w["phase"] for w in counted]
    assert phases.count("capacity") > phases.count("cpu")
    store = analysis.analyse(cast(Results, raw))["model"]["parts"]["store"]
    assert (store["cpu_us_per_op"], store["cpu_from"]) == (45.0, model.store_from("cpu"))
    raw["windows"] = [w for w in raw["windows"] if w["phase"] != "cpu"]
    store = analysis.analyse(cast(Results, raw))["model"]["parts"]["store"]
    assert (store["cpu_us_per_op"], store["cpu_from"]) == (10.0, model.store_from("capacity"))


def test_one_distance_points_scatter_is_its_own_error_not_every_points() -> None:
    """The session's nearest point read 25 % slow (one point's windows on a slow moment): it
    misses its own prediction, made from the other three, by that; the others are predicted
    from medians it does not move, and stay exact."""
    raw = synthetic.build(Truth(noise=0))
    points = sorted(raw["designs"]["session"]["distance"], key=lambda p: p["added_rtt_ms"])
    true_p50 = points[0]["p50_ms"]
    points[0]["p50_ms"] = true_p50 * 1.25
    built = model.build(raw)
    errors = {
        p["x"]: p["p50_error_pct"]
        for p in built.points
        if p["design"] == "session" and p["kind"] == "distance"
    }
    assert errors[0.0] == pytest.approx((1 / 1.25 - 1) * 100, abs=0.01)
    assert max(abs(errors[x]) for x in (1.0, 2.0, 5.0)) < 0.01
    # the level with the store near: the median over all four, each less its ops x RTT
    ops = points[1]["store_ops_per_request"]
    assert set(built.parts["distance_base"]["session"]) == {"cpu_us", "p50_ms"}
    assert built.parts["distance_base_from"] == model.DISTANCE_BASE_FROM  # said once
    assert built.parts["distance_base"]["session"]["p50_ms"] == pytest.approx(
        true_p50 - ops * points[0]["measured_rtt_ms"], abs=1e-3
    )
