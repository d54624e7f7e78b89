"""The report builder on recorded bench results: tables, medians, projection, CSVs and plots.

Two recorded runs: bench_results.json from before the six designs (three modes, one revocation
sample at the gateway, the outage probed for session and jwt-push only), which must still
render, and bench_results_6modes.json from a short real run of all six designs.

Long because it covers every table and file of one report, over both recorded runs.
"""

from __future__ import annotations

import copy
import csv
import itertools
import json
from pathlib import Path

import pytest

from loadtests import report
from loadtests.bench import results as bench_results
from loadtests.bench.phases import phase_plan
from loadtests.bench.results import BenchResults, MicrobenchRow, Phase
from loadtests.modes import (
    BY_NAME,
    HYBRID,
    JWT_COOKIE,
    JWT_OFF,
    JWT_PUSH,
    MODES,
    SESSION,
    SESSION_CACHED,
    SETTING_NAMES,
    revealed_settings,
    settings_groups,
)
from loadtests.report.experiments import micro_ratio
from loadtests.report.sections import render
from loadtests.report.summary import capacity, summarise
from loadtests.report.tables import seed_cells, seed_table

DATA = Path(__file__).parents[1] / "data"
OLD = DATA / "bench_results.json"
SIX = DATA / "bench_results_6modes.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEADERS = {
    OLD: "| claim | session | jwt-push | jwt-off |",
    SIX: "| claim | session | session-cached | hybrid | jwt-push | jwt-off | jwt-cookie |",
}


@pytest.fixture(params=[OLD, SIX], ids=["three-modes", "six-modes"])
def sample(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


@pytest.fixture
def results(sample: Path) -> BenchResults:
    return bench_results.load(sample)


@pytest.fixture
def six() -> BenchResults:
    return bench_results.load(SIX)


def test_report_files_from_recorded_results(
    sample: Path, results: BenchResults, tmp_path: Path
) -> None:
    path = report.write(results, tmp_path)
    text = path.read_text()
    for name in report.PLOTS:
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC), name
        assert f"`{name}`" in text
    for name in (
        "phases.csv",
        "distance.csv",
        "revocation.csv",
        "microbench.csv",
        "capacity.csv",
        "designs.csv",
        "outage.csv",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    with (tmp_path / "phases.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(results["phases"])
    recorded = {p["mode"] for p in results["phases"]}
    assert {r["mode"] for r in rows} == recorded
    assert json.loads((tmp_path / "results.json").read_text()) == results
    summary = (tmp_path / "summary.md").read_text()
    assert summary.splitlines()[0] == HEADERS[sample]
    assert "n/a" not in summary  # every cell of the blog table is measured
    with (tmp_path / "designs.csv").open() as handle:
        designs = list(csv.reader(handle))
    assert designs[0] == ["claim", *[m.name for m in MODES if m.name in recorded]]
    assert len(designs) == len(seed_cells(results, summarise(results["phases"]))[1]) + 1


def test_results_file_round_trips_unchanged(
    sample: Path, results: BenchResults, tmp_path: Path
) -> None:
    bench_results.dump(results, tmp_path / "results.json")
    assert bench_results.load(tmp_path / "results.json") == results
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(sample.read_text())


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


def row_of(results: BenchResults, claim: str) -> dict[str, str]:
    """One row of the blog table, by mode."""
    header, rows = seed_cells(results, summarise(results["phases"]))
    row = next(r for r in rows if str(r[0]).startswith(claim))
    return dict(zip(header[1:], [str(c) for c in row[1:]], strict=True))


def test_six_designs_each_get_their_own_measured_column(six: BenchResults) -> None:
    summary = summarise(six["phases"])
    assert list(summary) == [m.name for m in MODES]
    # Each design's outage answers are its own, not its credential's stand-in.
    outage = six["outage"]
    assert outage is not None
    for mode in MODES:
        assert mode.name in outage["stalled"] and mode.name in outage["down"]
    cells = row_of(six, "store outage")
    for mode in MODES:
        down = outage["down"][mode.name]["statuses"]
        assert ", ".join(f"{n}x {code}" for code, n in sorted(down.items())) in cells[mode.name]
    # Per-service CPU, the cache and the exchange, each only where it applies.
    cpu = row_of(six, "server load: CPU us per request, gateway")
    gateway = summary[HYBRID.name]["cpu_us_per_request"]["gateway"]
    assert cpu[HYBRID.name].startswith(f"{gateway:,.0f} / ")
    cache = row_of(six, "server load: session look-ups answered from memory")
    assert cache[SESSION.name] == "0% (no cache)"
    assert cache[SESSION_CACHED.name].endswith("misses/req)")
    assert cache[JWT_PUSH.name] == "-"
    exchanges = row_of(six, "server load: token exchanges per request")
    assert exchanges[HYBRID.name] != "-" and exchanges[SESSION.name] == "-"
    # Revocation at every hop, credential bytes and logins by credential.
    revocation = row_of(six, "revocation")
    for mode in (SESSION, SESSION_CACHED, HYBRID, JWT_PUSH, JWT_COOKIE):
        assert revocation[mode.name].startswith("refused within"), revocation[mode.name]
        assert "at all 4 hops" in revocation[mode.name]
    assert revocation[JWT_OFF.name].startswith("still accepted")
    size = six["credential_size"]
    assert size is not None
    cookie = size["jwt-cookie"]
    sizes = row_of(six, "request size")
    assert sizes[JWT_COOKIE.name] == (
        f"{cookie['safe_request_bytes']} / {cookie['unsafe_request_bytes']}"
    )
    assert cookie["unsafe_request_bytes"] > cookie["safe_request_bytes"]  # + X-CSRF-Token
    assert f"(inside: {size['internal']['safe_request_bytes']})" in sizes[HYBRID.name]
    assert "per exchange" in row_of(six, "login cost: end-to-end")[HYBRID.name]
    text = render(six, summary, [])
    assert "## Targets: per-check costs and the designs between the extremes" in text
    assert "cached session check on a hit" in text
    # The per-check goals, read off the microbench rows (this file's predate paired rounds).
    lookup = next(r for r in six["microbench"] if r["name"] == "Verifier session lookup")
    get = next(r for r in six["microbench"] if r["name"] == lookup["baseline"])
    assert "ratio_wall" not in lookup
    wall = f"{lookup['wall_us'] / get['wall_us']:.2f}x wall"
    assert f"| session check / {get['name']} (microbench) | <= 1.2 | {wall} |" in text
    assert "| JWT check on a cache hit, at a service (microbench, wall us) | < 10 |" in text


def test_a_paired_microbench_ratio_is_reported_as_measured() -> None:
    get: MicrobenchRow = {"name": "GET", "wall_us": 100.0, "cpu_us": 80.0, "baseline": None}
    lookup: MicrobenchRow = {
        "name": "lookup",
        "wall_us": 150.0,  # medians of separate blocks: not what the ratio is taken from
        "cpu_us": 120.0,
        "baseline": "GET",
        "ratio_wall": 1.134,
        "ratio_cpu": 1.2,
    }
    assert micro_ratio([get, lookup], lookup) == "1.13x wall, 1.20x CPU (paired)"
    get["instructions"], lookup["instructions"] = 300_000.0, 330_000.0
    assert micro_ratio([get, lookup], lookup).endswith("(paired), 1.10x instructions")
    del get["instructions"], lookup["instructions"]
    del lookup["ratio_wall"], lookup["ratio_cpu"]
    assert micro_ratio([get, lookup], lookup) == "1.50x wall"
    assert micro_ratio([get, lookup], get) == ""


def test_a_run_before_the_six_designs_renders_as_it_was_measured(tmp_path: Path) -> None:
    old = bench_results.load(OLD)
    summary = summarise(old["phases"])
    assert list(summary) == [SESSION.name, JWT_PUSH.name, JWT_OFF.name]
    assert summary["session"]["session_cache_per_request"] == {}
    table = seed_table(old, summary)
    assert "session look-ups answered from memory" not in table
    assert "token exchanges" not in table
    # One sample at the gateway, as recorded; jwt-off's outage is jwt-push's (JWTs never read
    # the session store), as that run's report said.
    assert row_of(old, "revocation")[SESSION.name] == "refused 1 ms after logout"
    outage = row_of(old, "store outage")
    assert outage[JWT_OFF.name] == outage[JWT_PUSH.name]
    assert "stalled: 3x 503" in outage[SESSION.name]


def test_failures_are_listed_by_phase_with_their_errors(six: BenchResults) -> None:
    phases = copy.deepcopy(six["phases"])
    phases[0]["failures"] = 3
    phases[0]["errors"] = {"GET /orders?limit=[n]: LocustBadStatusCode(code=503)": 3}
    text = render({**six, "phases": phases}, summarise(phases), [])
    assert "## Failures" in text
    label = phases[0]["label"]
    assert f"| {label} | GET /orders?limit=[n]: LocustBadStatusCode(code=503) | 3 |" in text
    clean, quiet = copy.deepcopy(six["phases"]), copy.deepcopy(six["distance"])
    for run in [*clean, *quiet]:
        run["errors"] = {}
    text = render({**six, "phases": clean, "distance": quiet}, summarise(clean), [])
    assert "## Failures" not in text


def test_medians_over_rounds_and_capacity_math(results: BenchResults) -> None:
    phases: list[Phase] = []
    for value in (100.0, 300.0, 200.0):  # three rounds of one mode; the median is 200
        phase = copy.deepcopy(next(p for p in results["phases"] if p["mode"] == "session"))
        phase["rps"] = value
        phase["cpu_us_per_request"] = {"gateway": value, "auth": 10.0, "orders": value / 2}
        phase["store_ops_per_request"] = {"session_store": 2.0, "data_store": 1.0}
        phase["store_cpu_us_per_request"] = {"session_store": 5.0, "data_store": 7.0}
        phase["session_cache_per_request"] = {"hit": value / 100, "miss": 0.0}
        phases.append(phase)
    summary = summarise(phases)
    assert list(summary) == ["session"]
    assert summary["session"]["rps"] == 200.0
    assert summary["session"]["service_cpu_us"] == 200.0 + 10.0 + 100.0
    assert summary["session"]["session_cache_per_request"] == {"hit": 2.0, "miss": 0.0}
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


# -- the modes table the report's columns come from ------------------------------------------


def test_every_mode_states_every_design_setting() -> None:
    assert [m.name for m in MODES] == [
        "session",
        "session-cached",
        "hybrid",
        "jwt-push",
        "jwt-off",
        "jwt-cookie",
    ]
    for mode in MODES:
        assert set(mode.settings) == set(SETTING_NAMES), mode.name
    assert BY_NAME["hybrid"].settings == {
        "JWT_REVOCATION": "push",
        "SESSION_CACHE": "push",
        "GATEWAY_TOKEN_EXCHANGE": "on",
    }
    assert JWT_COOKIE.credential.login_body("u", "p") == {
        "username": "u",
        "password": "p",
        "carrier": "cookie",
    }


def test_the_plan_interleaves_rounds_and_restarts_only_between_groups() -> None:
    groups = settings_groups(MODES)
    assert [[m.name for m in g] for g in groups] == [
        ["session", "jwt-push", "jwt-cookie"],
        ["session-cached"],
        ["hybrid"],
        ["jwt-off"],
    ]
    plan = phase_plan(2)
    assert plan[6:] == plan[:6][::-1]  # the second round reversed
    restarts = sum(a.settings != b.settings for a, b in itertools.pairwise(plan))
    assert restarts == 2 * (len(groups) - 1)  # none between the rounds
    assert sorted(m.name for m in plan) == sorted([m.name for m in MODES] * 2)


def test_what_a_gateway_reveals_of_its_settings() -> None:
    checked = 'auth_checks_total{service="gateway",mode="session",result="ok"} 3.0\n'
    hybrid = (
        'authscale_info{service="gateway",jwt_revocation="push"} 1.0\n'
        + checked
        + 'token_exchanges_total{service="gateway",result="hit"} 12.0\n'
        'token_exchanges_total{service="gateway",result="miss"} 1.0\n'
        'session_cache_total{service="gateway",result="miss"} 1.0\n'
    )
    seen = revealed_settings(hybrid)
    assert seen == {
        "JWT_REVOCATION": "push",
        "SESSION_CACHE": "push",
        "GATEWAY_TOKEN_EXCHANGE": "on",
    }
    assert not HYBRID.mismatches(seen)
    assert SESSION.mismatches(seen) == {
        "SESSION_CACHE": ("push", "off"),
        "GATEWAY_TOKEN_EXCHANGE": ("on", "off"),
    }
    assert not JWT_PUSH.mismatches(seen)  # JWTs are judged by JWT_REVOCATION alone
    plain = (
        'authscale_info{service="gateway",jwt_revocation="off"} 1.0\n'
        'token_exchanges_total{service="gateway",result="miss"} 0.0\n'
    )
    # A gateway that has verified no session (yet, or another replica did) shows only
    # JWT_REVOCATION: no class is stopped for what it cannot tell.
    assert revealed_settings(plain) == {"JWT_REVOCATION": "off"}
    assert not SESSION_CACHED.mismatches(revealed_settings(plain))
    seen = revealed_settings(plain + checked)
    assert seen["SESSION_CACHE"] == "off" and seen["GATEWAY_TOKEN_EXCHANGE"] == "off"
    assert JWT_PUSH.mismatches(seen) == {"JWT_REVOCATION": ("off", "push")}
    assert not SESSION.mismatches(seen) and not JWT_OFF.mismatches(seen)
