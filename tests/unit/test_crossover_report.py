"""The crossover report (report.md, report.html) from a recorded run, the plan and its ETA, the
histograms, and the HTML opened in the browser the suite uses (Debian's Chromium)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from loadtests.crossover import advice, experiment_sections, hist, report
from loadtests.crossover.document import Table
from loadtests.crossover.driver import merge_counts
from loadtests.crossover.plan import Options, Progress, Task, configs, tasks
from loadtests.crossover.results import SECTIONS, CrossoverResults, load
from loadtests.modes import MODES, settings_groups
from tests.browser.conftest import CHROMIUM_ARGS, chromium_path

RECORDED = Path(__file__).resolve().parents[1] / "data" / "crossover_results.json"


@pytest.fixture(scope="module")
def results() -> CrossoverResults:
    return load(RECORDED)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, results: CrossoverResults) -> Path:
    out = tmp_path_factory.mktemp("crossover-report")
    report.write(results, out)
    return out


def test_markdown_has_every_section_and_its_images(rendered: Path) -> None:
    text = (rendered / "report.md").read_text()
    for heading in (
        "# The crossover",
        "## Which design when",
        "## 1. Capacity at the knee",
        "## 2. Verifying hops",
        "## 3. Distance to the session store",
        "## 4. Revocation lag per hop",
        "## 5. Signing-key rotation under load",
        "## 6. The model",
        "## 7. nginx reference and store shards",
    ):
        assert f"\n{heading}\n" in f"\n{text}", heading
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {Path(name).name for name in images} >= {
        "knee_latency.png",
        "capacity.png",
        "cost_vs_hops.png",
        "latency_vs_store_rtt.png",
    }
    for name in images:
        assert (rendered / name).stat().st_size > 1000


def test_which_design_when_is_derived_from_the_numbers(results: CrossoverResults) -> None:
    statements = advice.which_design_when(results)
    text = "\n".join(statements)
    assert statements[0].startswith("Capacity:") or statements[0].startswith("CPU:")
    assert "Each further verifying hop costs" in text
    assert "Revocation:" in text and "until it expires" in text
    assert "choose" in text
    # Numbers, not prose: every design named appears with a figure beside it.
    for info in results["designs"]:
        assert re.search(re.escape(info["name"]) + r" [\d,.]+ (us|ms)", text), info["name"]


def test_html_is_self_contained(rendered: Path) -> None:
    page = (rendered / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) >= 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page  # nothing fetched: readable offline
    assert page.count("<table>") == (rendered / "report.md").read_text().count("\n|---")


def test_model_output_is_written_beside_the_report(rendered: Path) -> None:
    text = (rendered / "model.txt").read_text()
    assert text.startswith("crossover model: 50,000 req/s, 5 verifying hops")


def test_summary_names_every_section(results: CrossoverResults) -> None:
    text = report.summary(results)
    for word in ("knee", "hops", "distance", "revocation", "rotation", "nginx"):
        assert word in text
    assert set(SECTIONS) <= set(results)


def test_the_nginx_reference_names_the_aiohttp_floor(results: CrossoverResults) -> None:
    def reference_text(run: CrossoverResults) -> str:
        return "\n".join(str(b) for b in experiment_sections.reference_blocks(run))

    assert "A bare forward" not in reference_text(results)  # a run that did not measure it
    results = copy.deepcopy(results)  # the fixture is shared by the module
    nginx = results["nginx"]
    assert nginx is not None
    nginx["cpu_us_per_request"].update({"nginx": 60.0, "aiohttp-floor": 240.0})
    nginx["cpu_us_per_request"]["gateway-edgeoff"] = 330.0
    text = reference_text(results)
    assert "costs 240.0 us (4.00x nginx)" in text
    assert "spends 330.0 us, 1.38x that forward" in text
    assert "In the kernel" not in text  # a run that did not split the CPU


def test_the_nginx_reference_splits_kernel_and_user_time(results: CrossoverResults) -> None:
    results = copy.deepcopy(results)
    nginx = results["nginx"]
    assert nginx is not None
    nginx["cpu_us_per_request"].update({"nginx": 80.0, "gateway": 260.0})
    nginx["cpu_us_system"] = {"nginx": 55.0, "gateway": 60.0}
    text = "\n".join(str(b) for b in experiment_sections.reference_blocks(results))
    assert "nginx spent 55.0 us per request and the gateway 60.0 (alike" in text
    assert "in user space 25.0 against 200.0 (8.0x): the gap is the Python" in text
    [table] = [b for b in experiment_sections.reference_blocks(results) if isinstance(b, Table)]
    [gateway] = [row for row in table.rows if row[0] == "gateway"]
    assert gateway[3:6] == ("260.0", "200.0", "60.0")  # in all, user space, kernel
    nginx["cpu_us_system"] = {"nginx": 20.0, "gateway": 60.0}
    text = "\n".join(str(b) for b in experiment_sections.reference_blocks(results))
    assert "(alike" not in text and "the gap is" not in text


def test_histogram_percentiles_are_within_two_percent() -> None:
    counts: hist.Histogram = {}
    values = [0.5 + i * 0.37 for i in range(1000)]
    for value in values:
        hist.add(counts, value)
    assert hist.count(counts) == 1000
    for fraction in (0.5, 0.9, 0.99):
        exact = sorted(values)[int(fraction * 1000) - 1]
        assert hist.percentile(counts, fraction) == pytest.approx(exact, rel=0.021)
    assert hist.percentile({}, 0.5) is None and hist.maximum({}) is None
    merged = merge_counts(
        [
            {
                "pid": 1,
                "seen_seq": 3,
                "ready": 1,
                "stopped": 0,
                "segments": {"2": {"n": 2, "fail": 1, "hist": {"5": 2}, "errors": {"x": 1}}},
            },
            {
                "pid": 2,
                "seen_seq": 3,
                "ready": 1,
                "stopped": 0,
                "segments": {"2": {"n": 1, "fail": 0, "hist": {"5": 1}, "errors": {}}},
            },
        ],
        2,
    )
    assert merged == {"n": 3, "fail": 1, "hist": {"5": 3}, "errors": {"x": 1}}


def test_the_plan_follows_the_modes_table() -> None:
    groups = settings_groups(MODES)
    options = Options()
    proxy = configs(groups, options, netem=False)
    netem = configs(groups, options, netem=True)
    main = [c for c in proxy if c.purpose == "main"]
    assert [c.designs for c in main] == [tuple(m.name for m in g) for g in groups]
    # The proxy costs CPU: distance windows get configurations of their own, for the designs
    # holding a session; with netem they run inside the main ones.
    session_designs = {m.name for m in MODES if m.credential.kind == "session"}
    distance = [c for c in proxy if c.purpose == "distance"]
    assert {d for c in distance for d in c.distance} == session_designs
    assert all(c.remote_store for c in distance) and not any(c.remote_store for c in main)
    assert all(c.purpose == "main" and c.remote_store for c in netem)
    assert {d for c in netem for d in c.distance} == session_designs
    assert sum(c.rotation for c in proxy) == 1 and sum(c.nginx for c in proxy) == 1
    long = Options.long_run()
    assert sum(c.purpose == "knee" for c in configs(groups, long, netem=False)) == len(groups)
    planned = tasks(proxy, options)
    assert len({t.key for t in planned}) == len(planned)
    assert planned[0].key == "start" and planned[-1].key == "report"


def test_progress_calibrates_its_eta() -> None:
    now = [0.0]
    lines: list[str] = []
    progress = Progress(
        [Task("a", 10), Task("b", 10), Task("c", 10)],
        lines.append,
        clock=lambda: now[0],
        wall=lambda: 0.0,
    )
    assert progress.left_s() == 30
    now[0] = 20.0  # the first task took twice its estimate
    progress.finish("a", "phase a")
    assert progress.left_s() == pytest.approx(40.0)
    assert "phase a" in lines[-1] and "1/3 tasks" in lines[-1] and "~40s left" in lines[-1]
    progress.skip(["c"])
    assert progress.left_s() == pytest.approx(20.0)


def test_the_report_renders_in_chromium(rendered: Path) -> None:
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            page = browser.new_page()
            page.goto((rendered / "report.html").as_uri())
            assert page.title() == "authscale: the crossover"
            tables = page.locator("table")
            assert tables.count() >= 8
            assert page.locator("table >> nth=0 >> tbody tr").count() >= 1
            images = page.locator("img")
            assert images.count() >= 4
            widths = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"
            )
            assert all(w > 100 for w in widths), widths
            visible = page.locator("h2").all_inner_texts()
            assert "Which design when" in visible and "6. The model" in visible
        finally:
            browser.close()
