"""The report builder on recorded bench results: tables, medians, projection, CSVs and plots."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import pytest

from loadtests import report

SAMPLE = Path(__file__).parents[1] / "data" / "bench_results.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def results() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE.read_text())
    return data


def test_report_files_from_recorded_results(results: dict[str, Any], tmp_path: Path) -> None:
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
    assert {r["mode"] for r in rows} == {"session", "jwt-off", "jwt-push"}
    assert json.loads((tmp_path / "results.json").read_text()) == results
    summary = (tmp_path / "summary.md").read_text()
    assert summary.splitlines()[0] == "| claim | session | jwt-off | jwt-push |"
    assert "n/a" not in summary  # every cell of the blog table is measured


def test_every_claim_row_carries_the_recorded_numbers(results: dict[str, Any]) -> None:
    summary = report.summarise(results["phases"])
    table = report.seed_table(results, summary)
    session = summary["session"]
    assert f"{session['p50_ms']:,.1f} / {session['p99_ms']:,.1f}" in table
    assert "still accepted" in table and "refused" in table
    size = results["credential_size"]
    assert f"{size['jwt']['safe_request_bytes']} / {size['jwt']['unsafe_request_bytes']}" in table


def test_medians_over_rounds_and_capacity_math(results: dict[str, Any]) -> None:
    phases = []
    for value in (100.0, 300.0, 200.0):  # three rounds of one mode; the median is 200
        phase = copy.deepcopy(next(p for p in results["phases"] if p["mode"] == "session"))
        phase["rps"] = value
        phase["cpu_us_per_request"] = {"gateway": value, "auth": 10.0, "orders": value / 2}
        phase["store_ops_per_request"] = {"session_store": 2.0, "data_store": 1.0}
        phase["store_cpu_us_per_request"] = {"session_store": 5.0, "data_store": 7.0}
        phases.append(phase)
    summary = report.summarise(phases)
    assert list(summary) == ["session"]
    assert summary["session"]["rps"] == 200.0
    assert summary["session"]["service_cpu_us"] == 200.0 + 10.0 + 100.0
    rows = {r["rps"]: r for r in report.capacity(summary)}
    assert rows[100_000]["service_cores"] == 31.0  # 1e5 req/s x 310 us
    assert rows[100_000]["session_store_ops_per_s"] == 200_000
    assert rows[1_000_000]["session_store_cores"] == 5.0


def test_locust_saturation_is_flagged(results: dict[str, Any]) -> None:
    phases = copy.deepcopy(results["phases"])
    for phase in phases:
        if phase["mode"] == "jwt-off":
            phase["locust_saturated"] = True
            phase["locust_cpu_fraction"] = 0.97
    text = report.render({**results, "phases": phases}, report.summarise(phases), [])
    line = next(
        li for li in text.splitlines() if li.startswith("| jwt-off | ") and "Locust saturated" in li
    )
    assert "97%" in line
