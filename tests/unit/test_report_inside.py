"""The report's sections on what happens inside the stack (loadtests/report/inside.py), on a
recorded short run's traced phases and cluster phase (tests/data/bench_inside.json)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import cast

import pytest

from loadtests.bench import results as bench_results
from loadtests.bench.results import BenchResults, ClusterResults, TracedPhase
from loadtests.modes import MODES
from loadtests.report.inside import cluster, traced
from loadtests.report.sections import render
from loadtests.report.summary import summarise

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture
def results() -> BenchResults:
    base = bench_results.load(DATA / "bench_results_6modes.json")
    inside = json.loads((DATA / "bench_inside.json").read_text())
    base["traced"] = cast(list[TracedPhase], inside["traced"])
    base["cluster"] = cast(ClusterResults, inside["cluster"])
    return base


def test_traced_section_has_a_row_per_design_and_hop(results: BenchResults) -> None:
    text = "\n".join(traced(results))
    assert text.startswith("## Inside each hop")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    body = rows[1:]
    assert len(body) == 3 * len(MODES)
    for mode in MODES:
        hops = [r.split(" | ")[1] for r in body if r.startswith(f"| {mode.name} |")]
        assert hops == ["gateway", "orders", "auth"], mode.name
    # Sessions ask the session store at the gateway; JWTs never do, so their cell is "-".
    cells = [r.strip("| ").split(" | ") for r in body]
    gateway = {c[0]: c for c in cells if c[1] == "gateway"}
    assert "session_store" in gateway["session"][8]
    assert gateway["jwt-push"][8] == "-"
    # The comparison with /metrics is stated per kind of check.
    assert "Where the check asks the session store, the span means are" in text
    assert "Where the check is CPU only or a cache hit" in text


def test_cluster_section_states_spread_throughput_and_failover(results: BenchResults) -> None:
    text = "\n".join(cluster(results))
    assert "3 primaries and 3 replicas" in text
    assert "| one Redis | 291.5 |" in text and "| cluster, 3 primaries | 234.2 |" in text
    assert "shard-1 50%" in text and "shard-2 20%" in text and "shard-3 30%" in text
    assert "one primary 28,769 ops/s, the cluster 36,140 ops/s (1.26x" in text
    assert "answered again 2.95 s after the kill" in text
    assert "1x 200, 15x 503" in text and "JWT answers: 16x 200" in text
    assert "every hop: no revocation lost" in text


def test_cluster_section_says_what_went_wrong(results: BenchResults) -> None:
    broken = copy.deepcopy(results)
    c = broken["cluster"]
    assert c is not None
    c["failover"]["recovered_s"] = None
    c["failover"]["revoked_refused"]["orders-1"] = False
    c["throughput"] = None
    text = "\n".join(cluster(broken))
    assert "had not recovered when polling stopped" in text
    assert "still accepted at orders-1" in text and "no revocation lost" not in text
    assert "redis-benchmark" not in text
    c["failover"]["revoked_refused"] = {}
    assert "logout during the failover was never accepted" in "\n".join(cluster(broken))


def test_runs_without_them_render_as_before(results: BenchResults) -> None:
    older = copy.deepcopy(results)
    del older["traced"]
    older["cluster"] = None
    assert traced(older) == [] and cluster(older) == []
    whole = render(results, summarise(results["phases"]), [])
    assert "## Inside each hop" in whole and "## The session store as a Redis Cluster" in whole
    assert "## Inside each hop" not in render(older, summarise(older["phases"]), [])


def test_a_late_phase_that_failed_is_named_and_the_rest_stands(results: BenchResults) -> None:
    failed = copy.deepcopy(results)
    failed["cluster"] = None
    failed["notes"] = ["cluster phase failed: StackError: the Redis Cluster did not become ready"]
    whole = render(failed, summarise(failed["phases"]), [])
    assert "## Notes\n\n- cluster phase failed: StackError: the Redis Cluster" in whole
    assert "## The session store as a Redis Cluster" not in whole
    assert "## Inside each hop" in whole and "## The blog table, measured" in whole
    assert "## Notes" not in render(results, summarise(results["phases"]), [])
