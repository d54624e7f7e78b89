"""The report of one run, rendered from the analysed fixture and read back by its numbers."""

from __future__ import annotations

import base64
import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import cast

import pytest

from loadtests.measure import analysis, report, stats
from loadtests.measure.charts import CHARTS
from loadtests.measure.schema import CONTROL, Results, load
from tests.unit.measure import synthetic
from tests.unit.measure.synthetic import Truth

FIXTURE = Path(__file__).parents[2] / "data" / "measure_analysed.json"
PNG = b"\x89PNG\r\n\x1a\n"


class Tables(HTMLParser):
    """Every table's cells by the table's id, and every src/href value."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.links += [value or "" for name, value in attrs if name in ("src", "href")]
        if tag == "table":
            self._table = found.get("id") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parsed(page: str) -> Tables:
    tables = Tables()
    tables.feed(page)
    return tables


def fixture() -> Results:
    return load(FIXTURE)


def render(results: Results, out: Path) -> tuple[str, str]:
    report.write(results, out)
    return (out / "report.html").read_text(), (out / "report.md").read_text()


def text(results: Results) -> tuple[str, str]:
    """The report's two files without drawing its charts (report.html, report.md), for the
    tests of its tables and sentences; the charts are drawn by `render`'s tests."""
    content = report.blocks(results, ())
    return report.to_html(content, {}), report.to_markdown(content, {})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    out = tmp_path_factory.mktemp("report")
    page, markdown = render(fixture(), out)
    return out, page, markdown


def md_table_after(markdown: str, heading: str) -> list[list[str]]:
    """The first Markdown table after `heading`, without its separator line."""
    lines = markdown[markdown.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_the_headline_shows_each_designs_capacity_and_cpu_median(
    rendered: tuple[Path, str, str],
) -> None:
    _, page, _ = rendered
    rows = {row[0]: row for row in parsed(page).tables["headline"][1:]}
    results = fixture()
    assert set(rows) == set(results["designs"])
    shown = 0
    for name, design in results["designs"].items():
        capacity, cpu = design["capacity_rps"], design["cpu_us_per_request"]
        if capacity is None or cpu is None:
            assert name == CONTROL
            assert rows[name][1] == "-"
            continue
        assert rows[name][1] == f"{capacity['median']:,.0f}"
        assert rows[name][2] == f"{capacity['ci95'][0]:,.0f} to {capacity['ci95'][1]:,.0f}"
        assert rows[name][4] == f"{cpu['median']:,.0f}"
        assert rows[name][6] == f"{cpu['offered_rps']:,.0f}"
        assert f"<td>{name}</td><td>{capacity['median']:,.0f}</td>" in page
        shown += 1
    assert shown == 6


def test_per_core_is_capacity_over_the_systems_cpus() -> None:
    results = fixture()
    results["environment"]["system_cpus"] = [1, 2, 3]
    page, _ = text(results)
    rows = {row[0]: row for row in parsed(page).tables["headline"][1:]}
    for name, design in results["designs"].items():
        if design["capacity_rps"]:
            assert rows[name][3] == f"{design['capacity_rps']['median'] / 3:,.0f}"


def test_the_banner_lists_exactly_the_failed_checks(rendered: tuple[Path, str, str]) -> None:
    _, page, markdown = rendered
    failed = {c["name"] for c in fixture().get("checks", []) if not c["ok"]}
    assert failed, "the fixture keeps one failing check, to show the banner"
    banner = re.search(r'<div class="banner failed"[^>]*>(.*?)</div>', page, re.S)
    assert banner is not None
    assert page.index("banner failed") < page.index("Which design when")
    assert set(re.findall(r'class="check">([^<]*)<', banner.group(1))) == failed
    listed = set(re.findall(r"^> - \*\*(.+?)\*\*:", markdown, re.M))
    assert listed == failed


def test_all_checks_passing_gives_the_green_line() -> None:
    results = fixture()
    for check in results.get("checks", []):
        check["ok"] = True
    page, markdown = text(results)
    assert "banner failed" not in page
    assert f'class="banner passed" id="self-checks">All {len(results["checks"])} self' in page
    assert "self-checks passed" in markdown and "failed" not in markdown.split("##")[0]


def test_checks_not_judged_are_listed_apart_from_failed_ones() -> None:
    """A one-run file (--quick): the checks it had no intervals for are neither red nor
    green, and its headline prints no interval (a single run's ci95 is [x, x])."""
    raw = synthetic.build(Truth(noise=0.01, repeats=1))
    results = analysis.analyse(cast(Results, raw))
    unjudged = {c["name"] for c in results["checks"] if not analysis.judged(c)}
    failed = {c["name"] for c in results["checks"] if analysis.judged(c) and not c["ok"]}
    assert unjudged >= {"intervals_tight", "same_check_agree"}
    page, markdown = text(results)
    apart = re.search(r'<div class="banner none" id="unjudged-checks">(.*?)</div>', page, re.S)
    assert apart is not None
    assert set(re.findall(r'class="check">([^<]*)<', apart.group(1))) == unjudged
    red = re.search(r'<div class="banner failed"[^>]*>(.*?)</div>', page, re.S)
    shown_failed = set(re.findall(r'class="check">([^<]*)<', red.group(1))) if red else set()
    assert shown_failed == failed
    listed = set(re.findall(r"^> - \*\*(.+?)\*\*:", markdown, re.M))
    assert listed == failed | unjudged
    rows = {row[0]: row for row in parsed(page).tables["headline"][1:]}
    for name, design in results["designs"].items():
        if design["capacity_rps"]:
            assert " to " not in rows[name][2] and " to " not in rows[name][5], rows[name]


def test_one_embedded_png_per_chart_and_nothing_fetched(rendered: tuple[Path, str, str]) -> None:
    out, page, _ = rendered
    links = parsed(page).links
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(CHARTS) == page.count("<img ")
    assert all(base64.b64decode(data).startswith(PNG) for data in images)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f for f, _ in CHARTS.values())
    outside = [link for link in links if not link.startswith("data:")]
    assert all("http" not in link and link.startswith("docs/") for link in outside), outside
    assert "<script" not in page and "<link" not in page


def test_a_chart_without_figures_is_left_out_of_both_files(tmp_path: Path) -> None:
    results = fixture()
    results["windows"] = []
    for design in results["designs"].values():
        design.pop("distance", None)
    page, markdown = render(results, tmp_path)
    drawn = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(drawn) == len(CHARTS) - 2
    assert page.count("<img ") == len(drawn)
    assert sorted(re.findall(r"\]\(([^)]+\.png)\)", markdown)) == drawn
    assert "No figures for this chart" in page


def test_markdown_has_the_same_tables_as_the_html(rendered: tuple[Path, str, str]) -> None:
    out, page, markdown = rendered
    tables = parsed(page).tables
    assert md_table_after(markdown, "## Headline figures") == tables["headline"]
    assert md_table_after(markdown, "## The model") == tables["model-parts"]
    for png in re.findall(r"\]\(([^)]+\.png)\)", markdown):
        assert (out / png).read_bytes().startswith(PNG)


def test_every_model_point_is_a_row_with_its_errors(rendered: tuple[Path, str, str]) -> None:
    _, page, _ = rendered
    rows = parsed(page).tables["model-points"][1:]
    points = fixture().get("model", {})["points"]
    assert len(rows) == len(points) > 0
    for row, point in zip(rows, points, strict=True):
        assert row[0] == point["design"]
        assert row[5] == f"{point['cpu_error_pct']:+.1f}"
        assert row[8] == f"{point['p50_error_pct']:+.1f}"


def test_comparisons_advice_and_environment_are_printed(rendered: tuple[Path, str, str]) -> None:
    _, _, markdown = rendered
    results = fixture()
    for sentence in [c["sentence"] for c in results.get("comparisons", [])] + results.get(
        "advice", []
    ):
        assert f"- {sentence}" in markdown
    for name, version in results["environment"]["packages"].items():
        assert f"| {name} | {version} |" in markdown
    assert results["environment"]["started"] in markdown
    assert markdown.index("Which design when") < markdown.index("Headline figures")
    assert markdown.index("Headline figures") < markdown.index("## Comparisons")
    assert markdown.index("## Charts") < markdown.index("## The model")
    assert markdown.index("## The model") < markdown.index("## Method and environment")


def test_the_report_knows_no_design_by_name() -> None:
    results = fixture()
    renamed = copy.deepcopy(results["designs"]["session"])
    results["designs"] = {"made-up": renamed, CONTROL: results["designs"][CONTROL]}
    page, _ = text(results)
    rows = [row[0] for row in parsed(page).tables["headline"][1:]]
    assert rows == ["made-up", CONTROL]


def test_the_command_line_rerenders_a_recorded_run(tmp_path: Path) -> None:
    source = tmp_path / "run" / "results.json"
    source.parent.mkdir()
    source.write_text(FIXTURE.read_text())
    assert report.main([str(source)]) == 0
    assert (source.parent / "report.html").stat().st_size > 0
    assert (source.parent / "report.md").stat().st_size > 0
    assert report.main([]) == 2


def test_a_file_of_another_schema_is_refused_by_name(tmp_path: Path) -> None:
    source = tmp_path / "results.json"
    source.write_text(json.dumps({"schema_version": 0}))
    with pytest.raises(SystemExit, match="schema_version 1 expected"):
        report.main([str(source)])
    assert not (tmp_path / "report.html").exists()


LONG = {
    "nginx": {
        "offered_rps": 400.0,
        "seconds": 3.0,
        "proxies": {
            "nginx": {
                "requests": 1200,
                "failures": 0,
                "served_rps": 400.0,
                "p50_ms": 0.6,
                "p99_ms": 1.9,
                "cpu_us_per_request": 61.5,
            },
            "gateway": {
                "requests": 1199,
                "failures": 1,
                "served_rps": 399.7,
                "p50_ms": 1.4,
                "p99_ms": 4.2,
                "cpu_us_per_request": 512.25,
            },
        },
        "ratio": 8.33,
        "note": "nginx to orders-1",
    },
    "rotation": {
        "designs": ["jwt-push"],
        "old_kid": "a" * 43,
        "new_kid": "b" * 43,
        "auth_restart_ms": [812.0],
        "windows": [
            {
                "design": "jwt-push",
                "token": "old",
                "offered_rps": 150.0,
                "requests": 750,
                "failures": 0,
                "p99_ms": 7.5,
            },
            {
                "design": "jwt-push",
                "token": "new",
                "offered_rps": 150.0,
                "requests": 749,
                "failures": 3,
                "p99_ms": 9.25,
            },
        ],
        "old_token": {"jwt-push gateway": 200},
        "new_token": {"jwt-push gateway": 200},
        "jwks_fetches": 4,
        "cooldown_s": 2.0,
    },
    "failover": None,
    "traced": [
        {
            "design": "session",
            "offered_rps": 100.0,
            "requests": 200,
            "failures": 0,
            "p50_ms": 2.0,
            "spans": 1800,
            "traces": 200,
            "hops": {
                "orders": {
                    "requests": 198,
                    "verify_p50_us": 391.0,
                    "verify_mean_us": 420.0,
                    "store_p50_us": {"session_store": 309.4},
                    "store_calls_per_request": {"session_store": 1.05},
                    "metrics_check_mean_us": 377.0,
                }
            },
        },
    ],
    "skipped": {"failover": "redis-cli is not on PATH: no Redis Cluster can be created"},
    "wall_s": 80.0,
}


def test_the_long_experiments_are_a_section_with_their_numbers() -> None:
    results = fixture()
    results["long"] = copy.deepcopy(LONG)  # type: ignore[typeddict-item]
    page, markdown = text(results)
    tables = parsed(page).tables
    assert tables["long-nginx"][1:] == [
        ["nginx", "62", "0.6 / 1.9", "1200", "0"],
        ["gateway", "512", "1.4 / 4.2", "1199", "1"],
    ]
    assert [row[1:4] for row in tables["long-rotation"][1:]] == [
        ["old", "750", "0"],
        ["new", "749", "3"],
    ]
    assert tables["long-traced"][1][:4] == ["session", "orders", "198", "391"]
    assert "long-failover" not in tables  # null: skipped, with its reason listed
    assert "redis-cli is not on PATH" in page and "redis-cli is not on PATH" in markdown
    # A default run's file has no such section.
    assert not any(key.startswith("long-") for key in parsed(text(fixture())[0]).tables)


def test_the_credential_and_the_login_are_a_table_with_their_numbers() -> None:
    truth = Truth(noise=0)
    results = analysis.analyse(cast(Results, synthetic.build(truth)))
    results["designs"]["jwt-off"]["login"]["failures"] = 3  # type: ignore[index]
    results["method"]["argon2"] = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "2048"}
    page, markdown = text(results)
    table = parsed(page).tables["credentials"]
    rows = {row[0]: row[1:] for row in table[1:]}
    assert set(rows) == set(truth.credential_bytes)  # the control holds no credential: no row
    for name, size in truth.credential_bytes.items():
        cpu = truth.login_cpu_us[name]
        failed = "3" if name == "jwt-off" else "0"
        p50 = results["designs"][name]["login"]["p50_ms"]  # type: ignore[index]
        figure = results["designs"][name]["login"]["cpu_us_per_request"]  # type: ignore[index]
        assert figure["runs"] == [round(cpu * f, 1) for f in (0.98, 1.0, 1.02)]
        assert figure["median"] == cpu
        half = stats.t975(2) * 0.02 * cpu / 3**0.5  # sd of +-2 % runs is 2 % of the mean
        assert figure["ci95"] == pytest.approx([cpu - half, cpu + half], abs=0.01)
        interval = f"{cpu - half:,.0f} to {cpu + half:,.0f}"
        assert rows[name] == [f"{size:,}", f"{cpu:,.0f}", interval, f"{p50:.1f}", failed], name
    assert md_table_after(markdown, "## The credential and the login") == table
    # The figure says how cheap the bench's password hash was, and at what rate it logged in.
    assert "ARGON2_TIME_COST: 1; ARGON2_MEMORY_KIB: 2048" in markdown
    assert f"3 windows at {truth.login_rps:,.0f} req/s" in markdown
    section = markdown.index("## The credential and the login")
    assert markdown.index("## Comparisons") < section < markdown.index("## Charts")


def test_a_file_without_credential_or_login_figures_has_no_such_section() -> None:
    page, markdown = text(fixture())  # recorded before they were measured
    assert "credentials" not in parsed(page).tables
    assert "The credential and the login" not in markdown


def test_the_micro_benchmark_is_a_table_of_its_rows_not_a_setting() -> None:
    results = analysis.analyse(cast(Results, synthetic.build(Truth(noise=0))))
    results["method"]["microbench"] = [
        {"name": "Verifier JWT, cache hit", "wall_us": 0.35, "cpu_us": 0.35, "baseline": None},
        {
            "name": "Verifier session lookup",
            "wall_us": 78.53,
            "cpu_us": 72.52,
            "baseline": "redis-py asyncio GET (bare)",
            "ratio_wall": 1.1,
            "ratio_cpu": 1.107,
        },
        {
            "name": "Verifier JWT, cache hit (paced)",
            "wall_us": -0.14,
            "cpu_us": -1.33,
            "baseline": "Verifier JWT, cache hit",
        },
    ]
    results["method"]["microbench_placement"] = {"cpus": [0], "kept_awake": True, "gap_ms": 6.667}
    page, markdown = text(results)
    table = parsed(page).tables["microbench"]
    assert table[1:] == [
        ["Verifier JWT, cache hit", "0.35", "0.35", "-", "-"],
        ["Verifier session lookup", "72.52", "78.53", "redis-py asyncio GET (bare)", "1.11x"],
        ["Verifier JWT, cache hit (paced)", "-1.33", "-0.14", "Verifier JWT, cache hit", "-"],
    ]
    assert md_table_after(markdown, "### The per-check micro-benchmark") == table
    assert "one call every 6.667 ms" in markdown and "pinned to CPU 0, kept awake" in markdown
    # Not dumped into the settings' table as a run of text.
    settings = md_table_after(markdown, "### Settings of the run")
    assert not {"microbench", "microbench_placement"} & {row[0] for row in settings}


def test_the_write_is_a_table_of_its_repeats_and_an_old_single_window_reads_as_one_run() -> None:
    results = analysis.analyse(cast(Results, synthetic.build(Truth(noise=0))))
    new = {"runs": [1500.0, 1600.0, 1700.0], "offered_rps": 100.0}
    for name, design in results["designs"].items():
        if name != CONTROL:
            figure = dict(new) if name == "session" else {"runs": [1000.0], "offered_rps": 100.0}
            design["post"] = {  # type: ignore[typeddict-item]
                "cpu_us_per_request": figure,
                "p50_ms": 5.0,
                "p99_ms": 8.0,
                "failures": 0,
                "cpu_by_process": {},
                "offered_rps": 100.0,
            }
    # a file from before the repeats: a bare number
    results["designs"]["jwt-off"]["post"]["cpu_us_per_request"] = 2153.0  # type: ignore[index,arg-type]
    _page, markdown = text(results)
    rows = {row[0]: row[1:] for row in md_table_after(markdown, "## The write")[1:]}
    half = stats.t975(2) * 100.0 / 3**0.5  # sd 100 over three runs
    assert rows["session"][:3] == ["100", "1,600", f"{1600 - half:,.0f} to {1600 + half:,.0f}"]
    assert rows["jwt-off"][1:3] == ["2,153", "one run, no interval"]
    assert rows["jwt-push"][1:3] == ["1,000", "one run, no interval"]


def test_the_machine_is_a_table_of_its_numbers() -> None:
    results = analysis.analyse(
        cast(Results, synthetic.build(Truth(noise=0.01, lap_step=0.03, lap_elasticity=2.5)))
    )
    page, markdown = text(results)
    table = parsed(page).tables["machine"]
    found = results["machine"]
    assert found is not None
    assert table[1:] == [
        [
            "the spinners' lap (the system's CPUs)",
            f"{found['lap_us']:,.1f}",
            f"{found['lap_cv_pct']:.1f}",
            f"{found['r']:.2f}",
            f"{found['elasticity']:.2f}",
            f"{found['explained_pct']:.0f}",
        ]
    ]
    assert table[1][1] == "1,164.0"
    # The truth moved CPU per request 2.5 % per 1 % of lap, under 1 % noise.
    assert float(table[1][3]) > 0.9 and 2.3 < float(table[1][4]) < 2.7
    assert md_table_after(markdown, "### The machine during the windows") == table
    # Pace's counts beside it, once the run judged windows (the synthetic run's did not).
    assert "windows judged" not in markdown
    results["machine"] = {**found, "judged_windows": 40, "slow_windows": 7, "replaced_windows": 3}
    results["method"]["slow_pct"] = 5.0
    _page, markdown = text(results)
    assert "40 windows judged" in markdown and "7 were measured" in markdown
    assert "over 5 % slower" in markdown and "3 capacity windows" in markdown
    # With the load generator's figure, its row and both together.
    loaded = analysis.analyse(
        cast(
            Results,
            synthetic.build(
                Truth(noise=0.01, lap_step=0.03, load_us=300.0, load_step=0.05, load_elasticity=1)
            ),
        )
    )
    with_load = loaded["machine"]
    assert with_load is not None
    rows = parsed(text(loaded)[0]).tables["machine"][1:]
    assert rows[1] == [
        "the load generator's CPU per request (its own CPU)",
        "300.0",
        f"{with_load['load_cv_pct']:.1f}",
        f"{with_load['load_r']:.2f}",
        f"{with_load['load_elasticity']:.2f}",
        f"{with_load['load_explained_pct']:.0f}",
    ]
    assert rows[2] == ["both", "-", "-", "-", "-", f"{with_load['both_explained_pct']:.0f}"]
    # A run without the laps has no such table.
    results["machine"] = None
    page, markdown = text(results)
    assert "machine" not in parsed(page).tables
    assert "### The machine during the windows" not in markdown
