"""The crossover model (loadtests/model.py): pure functions, checked on a recorded run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loadtests import model
from loadtests.crossover.results import CrossoverResults, load

RECORDED = Path(__file__).resolve().parents[1] / "data" / "crossover_results.json"


@pytest.fixture(scope="module")
def results() -> CrossoverResults:
    return load(RECORDED)


@pytest.fixture(scope="module")
def models(results: CrossoverResults) -> list[model.DesignModel]:
    return model.build(results)


def test_least_squares_recovers_a_line_and_flattens_a_constant_x() -> None:
    assert model.least_squares([1, 2, 3], [5, 7, 9]) == pytest.approx((3.0, 2.0))
    assert model.least_squares([2, 2], [1, 3]) == (2.0, 0.0)
    assert model.least_squares([], []) == (0.0, 0.0)


def test_fit_reports_the_error_at_every_point() -> None:
    line = model.fit([1, 2, 3], [10, 20, 36])
    assert line["slope"] == pytest.approx(13.0)
    assert [p["predicted"] for p in line["points"]] == pytest.approx([9.0, 22.0, 35.0])
    errors = [p["error_pct"] for p in line["points"]]
    assert errors == pytest.approx([-10.0, 10.0, -2.8])
    assert line["max_abs_error_pct"] == pytest.approx(10.0)
    assert model.error_pct(0.0, 0.0) == 0.0 and model.error_pct(1.0, 0.0) is None


def test_the_recorded_run_is_a_complete_crossover_run(results: CrossoverResults) -> None:
    names = [d["name"] for d in results["designs"]]
    assert names and set(results["hops"]["designs"]) == set(names)
    for name in names:
        hops = sorted(p["hops"] for p in results["hops"]["designs"][name])
        assert hops == [1, 2, 3]
    assert results["distance"]["designs"] and results["revocation"] and results["rotation"]
    assert results["shards"] is not None and results["shards"]["per_shard_ops"] > 0


def test_one_model_per_measured_design_fitted_on_verifications(
    results: CrossoverResults, models: list[model.DesignModel]
) -> None:
    assert [m.name for m in models] == [d["name"] for d in results["designs"]]
    for m in models:
        points = results["hops"]["designs"][m.name]
        xs = [p["checks_per_request"] for p in points]
        intercept, slope = model.least_squares(xs, [p["cpu_us_total"] for p in points])
        assert (m.cpu["intercept"], m.cpu["slope"]) == pytest.approx((intercept, slope), abs=1e-3)
        assert len(m.cpu["points"]) == 3


def test_every_hop_verifies_once_more(results: CrossoverResults) -> None:
    """The stack's hops as the services counted them: 1 with edge auth off (2 for the hybrid,
    whose gateway verifies to exchange the session), 2 for a GET, 3 for a POST."""
    for info in results["designs"]:
        checks = {
            p["hops"]: p["checks_per_request"] for p in results["hops"]["designs"][info["name"]]
        }
        hybrid = info["settings"]["GATEWAY_TOKEN_EXCHANGE"] == "on"
        assert checks[1] == pytest.approx(2.0 if hybrid else 1.0, abs=0.25)
        assert checks[2] == pytest.approx(2.0, abs=0.25)
        assert checks[3] == pytest.approx(3.0, abs=0.3)


def test_prediction_scales_with_rate_and_counts_shards(
    results: CrossoverResults, models: list[model.DesignModel]
) -> None:
    shards = results["shards"]
    assert shards is not None
    per_shard = shards["per_shard_ops"]
    for m in models:
        one = model.predict(m, 10_000, 5, 0.0, per_shard)
        two = model.predict(m, 20_000, 5, 0.0, per_shard)
        assert two.cores == pytest.approx(2 * one.cores, rel=0.01, abs=0.02)
        expected_cpu = max(m.cpu["intercept"] + 5 * m.cpu["slope"], 0.0)
        assert one.cpu_us_per_request == pytest.approx(expected_cpu, abs=0.1)
        assert one.shards == (
            math.ceil(one.store_ops_per_s / per_shard) if one.store_ops_per_s else 0
        )


def test_sessions_use_the_store_and_jwts_do_not(
    results: CrossoverResults, models: list[model.DesignModel]
) -> None:
    by_name = {m.name: m for m in models}
    kinds = {d["name"]: d for d in results["designs"]}
    for name, m in by_name.items():
        design = kinds[name]
        cached = design["settings"]["SESSION_CACHE"] == "push"
        if design["kind"] == "session" and not cached:
            assert m.store_ops_at(2) > 1.5  # the gateway's and orders' GET, at least
        if design["kind"] == "jwt":
            assert m.store_ops_at(5) < 0.05
            assert model.predict(m, 50_000, 5, 1.0, 1e5).shards == 0


def test_a_farther_store_costs_each_store_call_one_round_trip(
    models: list[model.DesignModel],
) -> None:
    for m in models:
        near = model.predict(m, 1000, 3, m.base_rtt_ms, None)
        far = model.predict(m, 1000, 3, m.base_rtt_ms + 5.0, None)
        assert far.p50_ms - near.p50_ms == pytest.approx(m.store_ops_at(3) * 5.0, abs=0.02)
        assert far.cores == near.cores


def test_revocation_lag_and_the_bound(
    results: CrossoverResults, models: list[model.DesignModel]
) -> None:
    for m in models:
        lag = results["revocation"][m.name]
        p = model.predict(m, 1000, 2, 0.0, None, revocation_bound_s=1.0)
        if lag["until_exp"]:
            assert p.until_exp and not p.meets_bound and "until exp" in p.revocation_text
            assert p.revocation_lag_s == lag["token_lifetime_s"]
        else:
            worst = max(h["p99_ms"] or 0 for h in lag["hops"].values())
            assert p.revocation_lag_s == pytest.approx(worst / 1000, abs=1e-3)
            assert p.meets_bound == (worst / 1000 <= 1.0)


def test_jwt_without_revocation_lives_until_exp(results: CrossoverResults) -> None:
    off = [d["name"] for d in results["designs"] if d["settings"]["JWT_REVOCATION"] == "off"]
    assert off, "the recorded run has a design with revocation off"
    for name in off:
        lag = results["revocation"][name]
        assert lag["until_exp"] and lag["token_lifetime_s"] == 300


def test_point_errors_cover_every_measured_point(
    results: CrossoverResults, models: list[model.DesignModel]
) -> None:
    errors = model.point_errors(results, models)
    hop_points = sum(len(v) for v in results["hops"]["designs"].values())
    distance_points = sum(len(v) for v in results["distance"]["designs"].values())
    assert len([e for e in errors if e.where.startswith("hops")]) == 3 * hop_points
    assert len([e for e in errors if e.where.startswith("RTT")]) == 2 * distance_points
    for e in errors:
        if e.error_pct is not None and abs(e.measured) > 1:  # rounded to 3 places
            assert e.error_pct == pytest.approx(
                (e.predicted - e.measured) / e.measured * 100, abs=0.1
            )
    worst = model.worst_error(errors, "cpu_us")
    assert worst is not None and worst >= 0


def test_crossings_find_where_two_lines_meet() -> None:
    def line(a: float, b: float) -> model.DesignModel:
        fit = model.fit([1, 2, 3], [a + b, a + 2 * b, a + 3 * b])
        return model.DesignModel(
            name=f"{a}+{b}x",
            cpu=fit,
            store_ops=model.fit([1, 2], [0, 0]),
            latency=model.fit([1, 2], [1, 1]),
            distance=None,
            base_rtt_ms=0.0,
            base_distance_p50_ms=None,
            revocation_lag_ms=10.0,
            until_exp=False,
            token_lifetime_s=None,
            knee_rps=None,
        )

    steep, flat, parallel = line(100, 50), line(200, 25), line(300, 50)
    assert model.crossings([steep, flat]) == [(flat.name, steep.name, 4.0)]
    assert model.crossings([steep, parallel]) == []
    picks = model.scenarios([steep, flat], None, rate=1000, hops=(1, 5), rtts_ms=(0.0,))
    assert [s.cheapest for s in picks if s.bound_s is None] == [steep.name, flat.name]


def test_main_prints_every_design_and_the_error(
    results: CrossoverResults, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--rate", "50000", "--hops", "5", "--store-rtt-ms", "1", "--results", str(RECORDED)]
    assert model.main([*argv, "--revocation-bound-s", "1"]) == 0
    out = capsys.readouterr().out
    assert "50,000 req/s, 5 verifying hops, session store 1 ms away" in out
    for info in results["designs"]:
        assert f"\n{info['name']} " in out
    assert "model error on the measured points" in out and "CPU per request" in out
    assert "lag <= 1 s" in out


def test_main_explains_a_missing_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert model.main(["--results", str(tmp_path / "none.json")]) == 1
    assert "python -m loadtests.crossover" in capsys.readouterr().err
