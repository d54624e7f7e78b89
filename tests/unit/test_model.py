"""`python -m loadtests.model` (loadtests/model.py over loadtests/measure/model.py): the
projection of an analysed run by its numbers, and the command line. The run is the synthetic one
of tests/unit/measure (no noise): its parts are known exactly."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, cast

import pytest

from loadtests import model as cli
from loadtests.measure import analysis, model
from loadtests.measure.schema import Results
from tests.unit.measure import synthetic


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    built = cast(Results, synthetic.build(synthetic.Truth(noise=0)))
    return cast(dict[str, Any], analysis.analyse(built))


def test_the_projection_at_a_measured_chain_point_is_the_models_own(
    results: dict[str, Any],
) -> None:
    """At k hops and the run's own store RTT, the projection is the model's prediction for
    that chain point (the same parts, the same formula)."""
    rtt = results["model"]["parts"]["store"]["rtt_ms"]
    checked = 0
    for point in results["model"]["points"]:
        if point["kind"] != "chain":
            continue
        design, k = point["design"], point["x"]
        measured_ops = results["designs"][design]["hops"][str(int(k))]["store_ops_per_request"]
        projected = model.project(results, design, 1000.0, k, rtt)
        assert projected is not None
        if abs(projected.store_ops_per_request - measured_ops) > 0.05:
            continue  # the chain's ops are not on a line here: the formula's inputs differ
        checked += 1
        assert projected.cpu_us_per_request == pytest.approx(point["cpu_model"], rel=1e-3)
        assert projected.p50_ms == pytest.approx(point["p50_model"], abs=2e-3)
    assert checked >= 3


def test_cores_and_store_operations_scale_with_the_rate(results: dict[str, Any]) -> None:
    one = model.project(results, "session", 1000.0, 3.0, 0.5)
    ten = model.project(results, "session", 10_000.0, 3.0, 0.5)
    assert one is not None and ten is not None
    assert ten.cores == pytest.approx(10 * one.cores, rel=0.01)
    assert ten.store_ops_per_s == pytest.approx(10 * one.store_ops_per_s, rel=0.01)
    assert one.cores == pytest.approx(1000.0 * one.cpu_us_per_request / 1e6, abs=0.01)
    # The plain session asks the store at every hop and the edge: k + 1 operations.
    assert one.store_ops_per_request == pytest.approx(4.0, abs=0.3)
    jwt = model.project(results, "jwt-push", 1000.0, 3.0, 0.5)
    assert jwt is not None and jwt.store_ops_per_request < 0.1


def test_a_farther_store_costs_each_store_operation_one_round_trip(
    results: dict[str, Any],
) -> None:
    near = model.project(results, "session", 1000.0, 2.0, 0.0)
    far = model.project(results, "session", 1000.0, 2.0, 3.0)
    assert near is not None and far is not None
    assert far.p50_ms - near.p50_ms == pytest.approx(3.0 * near.store_ops_per_request, abs=0.01)
    assert far.cpu_us_per_request == near.cpu_us_per_request  # waiting is not CPU


def test_shards_come_from_a_long_runs_shard_capacity(results: dict[str, Any]) -> None:
    assert model.project(results, "session", 1000.0, 1.0, 0.0).shards is None  # type: ignore[union-attr]
    measured = copy.deepcopy(results)
    measured["long"] = {"failover": {"throughput": {"single_rps": 1000.0}}}
    projected = model.project(measured, "session", 1000.0, 1.0, 0.0)
    assert projected is not None
    assert projected.shards == -(-int(1000.0 * projected.store_ops_per_request) // 1000)
    assert projected.shards >= 2


def test_revocation_lag_and_the_bound(results: dict[str, Any]) -> None:
    lives = copy.deepcopy(results)
    lives["designs"]["jwt-off"]["revocation_lag_ms"] = None  # works until it expires
    table = cli.rows(lives, 1000.0, 2.0, 0.5, bound_s=0.001)
    by_design = {row[0]: row for row in table[1:]}
    assert by_design["jwt-off"][6] == "until exp" and by_design["jwt-off"][7] == "no"
    lag = results["designs"]["session"]["revocation_lag_ms"]["p99"]
    assert by_design["session"][6] == f"{lag:,.1f} ms"
    assert by_design["session"][7] == ("yes" if lag <= 1.0 else "no")


def test_main_prints_every_modelled_design(
    results: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert cli.main(["--results", str(path), "--rate", "2000", "--hops", "3"]) == 0
    out = capsys.readouterr().out
    modelled = {p["design"] for p in results["model"]["points"]}
    assert len(modelled) >= 5
    lines = out.splitlines()
    for name in modelled:
        assert any(line.split()[:1] == [name] for line in lines), name


def test_main_explains_a_missing_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--results", str(tmp_path / "none.json")]) == 1
    assert "make bench" in capsys.readouterr().err
