"""The README's reference block: generated from reports/reference/results.json, checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.measure import readme
from loadtests.measure.schema import CONTROL, load

FIXTURE = Path(__file__).parents[2] / "data" / "measure_analysed.json"
REFERENCE = readme.ROOT / readme.REFERENCE / "results.json"


@pytest.mark.skipif(
    not REFERENCE.exists(),
    reason="reports/reference/results.json is not committed yet: the README's block shows the "
    "fixture until the reference run is added",
)
def test_the_committed_readme_shows_the_reference_run() -> None:
    assert readme.main(["--check"]) == 0


def test_the_block_holds_the_fixtures_medians() -> None:
    results = load(FIXTURE)
    block = readme.block(results)
    assert block.startswith(readme.BEGIN) and block.endswith(readme.END)
    rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")
        for line in block.splitlines()
        if line.startswith("| ") and not line.startswith("| design")
    }
    assert set(rows) == set(results["designs"])
    for name, design in results["designs"].items():
        capacity, cpu = design["capacity_rps"], design["cpu_us_per_request"]
        if name == CONTROL:
            assert rows[name][1] == "-"
            continue
        assert capacity is not None and cpu is not None
        assert rows[name][1] == f"{capacity['median']:,.0f}"
        assert rows[name][4] == f"{cpu['median']:,.0f}"
    assert "](reports/reference/capacity_per_core.png)" in block
    assert "(reports/reference/report.html)" in block


def test_rewrite_replaces_only_the_block_and_check_sees_a_stale_one(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text(f"# title\n\nbefore\n\n{readme.BEGIN}\nold figures\n{readme.END}\n\nafter\n")
    args = ["--readme", str(page), "--results", str(FIXTURE)]
    assert readme.main([*args, "--check"]) == 1
    assert "old figures" in page.read_text()
    assert readme.main(args) == 0
    text = page.read_text()
    assert text.startswith("# title\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert text.count(readme.BEGIN) == 1 and "old figures" not in text
    assert readme.block(load(FIXTURE)) in text
    assert readme.main([*args, "--check"]) == 0


def test_a_readme_without_markers_is_refused_by_name(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text("# no block here\n")
    with pytest.raises(SystemExit, match="reference:begin"):
        readme.main(["--readme", str(page), "--results", str(FIXTURE)])
    assert page.read_text() == "# no block here\n"


def test_the_checks_line_names_failed_and_unjudged_checks_apart() -> None:
    results = load(FIXTURE)
    results["checks"] = [
        {"name": "a", "ok": True, "detail": "", "judged": True},
        {"name": "b", "ok": False, "detail": "", "judged": True},
        {"name": "c", "ok": False, "detail": "", "judged": False},
    ]
    line = readme.checks_line(results)
    failed = line.split("**failed: ")[1].split("**")[0]
    assert failed == "b"
    assert line.endswith(": c.") and "1 of 3 pass" in line
    results["checks"] = [c for c in results["checks"] if c["name"] != "b"]
    assert readme.checks_line(results).startswith("Self-checks: all 1 judged pass.")


def test_the_block_names_the_machine_its_figures_are_from() -> None:
    """The same code measured 1.2-2.0x the CPU per request on an AMD EPYC as on the reference's
    Intel Xeon: a reader compares their figures with the CPU's name beside them."""
    results = load(FIXTURE)
    results["environment"]["cpu_model"] = "AMD EPYC"
    results["environment"]["kernel"] = "6.18.44"
    first = readme.block(results).splitlines()[1]
    assert "on 2 CPUs (AMD EPYC, 6.18.44): " in first
    del results["environment"]["cpu_model"], results["environment"]["kernel"]
    assert "on 2 CPUs: " in readme.block(results).splitlines()[1]
