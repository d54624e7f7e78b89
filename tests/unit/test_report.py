"""The report builder on recorded bench results: tables, medians, projection, CSVs and plots."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest

from loadtests import report
from loadtests.bench import results as bench_results
from loadtests.bench.results import BenchResults, Phase
from loadtests.modes import MODES
from loadtests.report.sections import render
from loadtests.report.summary import capacity, summarise
from loadtests.report.tables import seed_table

SAMPLE = Path(__file__).parents[1] / "data" / "bench_results.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def results() -> BenchResults:
    return bench_results.load(SAMPLE)


def test_report_files_from_recorded_results(results: BenchResults, tmp_path: Path) -> None:
    path = report.write(results, tmp_path)
    text = path.read_text()
    for name in report.PLOTS:
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC), name
        assert f"`{name}`" in text
    for name in ("phases.csv", "distance.csv", "revocation.csv", "microbench.csv", "capacity.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    with (tmp_path / "phases.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(results["phases"])
    assert {r["mode"] for r in rows} == {m.name for m in MODES}
    assert json.loads((tmp_path / "results.json").read_text()) == results
    summary = (tmp_path / "summary.md").read_text()
    assert summary.splitlines()[0] == "| claim | session | jwt-off | jwt-push |"
    assert "n/a" not in summary  # every cell of the blog table is measured


def test_results_file_round_trips_unchanged(results: BenchResults, tmp_path: Path) -> None:
    bench_results.dump(results, tmp_path / "results.json")
    assert bench_results.load(tmp_path / "results.json") == results
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(SAMPLE.read_text())


def test_a_file_that_is_not_a_results_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text(json.dumps({"phases": []}))
    with pytest.raises(ValueError, match=r"lacks .*started"):
        bench_results.load(tmp_path / "other.json")


def test_every_claim_row_carries_the_recorded_numbers(results: BenchResults) -> None:
    summary = summarise(results["phases"])
    table = seed_table(results, summary)
    session = summary["session"]
    assert f"{session['p50_ms']:,.1f} / {session['p99_ms']:,.1f}" in table
    assert "still accepted" in table and "refused" in table
    size = results["credential_size"]
    assert size is not None
    assert f"{size['jwt']['safe_request_bytes']} / {size['jwt']['unsafe_request_bytes']}" in table


def test_medians_over_rounds_and_capacity_math(results: BenchResults) -> None:
    phases: list[Phase] = []
    for value in (100.0, 300.0, 200.0):  # three rounds of one mode; the median is 200
        phase = copy.deepcopy(next(p for p in results["phases"] if p["mode"] == "session"))
        phase["rps"] = value
        phase["cpu_us_per_request"] = {"gateway": value, "auth": 10.0, "orders": value / 2}
        phase["store_ops_per_request"] = {"session_store": 2.0, "data_store": 1.0}
        phase["store_cpu_us_per_request"] = {"session_store": 5.0, "data_store": 7.0}
        phases.append(phase)
    summary = summarise(phases)
    assert list(summary) == ["session"]
    assert summary["session"]["rps"] == 200.0
    assert summary["session"]["service_cpu_us"] == 200.0 + 10.0 + 100.0
    rows = {r["rps"]: r for r in capacity(summary)}
    assert rows[100_000]["service_cores"] == 31.0  # 1e5 req/s x 310 us
    assert rows[100_000]["session_store_ops_per_s"] == 200_000
    assert rows[1_000_000]["session_store_cores"] == 5.0


def test_locust_saturation_is_flagged(results: BenchResults) -> None:
    phases = copy.deepcopy(results["phases"])
    for phase in phases:
        if phase["mode"] == "jwt-off":
            phase["locust_saturated"] = True
            phase["locust_cpu_fraction"] = 0.97
    text = render({**results, "phases": phases}, summarise(phases), [])
    line = next(
        li for li in text.splitlines() if li.startswith("| jwt-off | ") and "Locust saturated" in li
    )
    assert "97%" in line
