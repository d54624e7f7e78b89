"""A very short real crossover run (`python -m loadtests.crossover`, one pair of designs that
share their settings, tiny windows): it finishes within a minute, every section is there, the
figures agree with what each design is built to do, and nothing it started is left behind."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadtests.crossover.netns import PREFIX
from loadtests.crossover.results import SECTIONS, load
from services.common.settings import REPO_ROOT

PAIR = ("session", "jwt-push")  # one settings group: one start of the services


def _namespaces() -> str:
    if shutil.which("ip") is None:
        return ""
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


@pytest.mark.timeout(180)
def test_crossover_smoke_run(tmp_path: Path, redis_available: None) -> None:
    out = tmp_path / "crossover"
    argv = [sys.executable, "-m", "loadtests.crossover", "--out", str(out)]
    argv += ["--designs", ",".join(PAIR), "--users", "8", "--processes", "1"]
    argv += ["--ladder-start", "40", "--ladder-factor", "2", "--ladder-steps", "2"]
    argv += ["--search-steps", "3", "--refine-to", "0.5"]
    argv += ["--step-s", "0.6", "--settle-s", "0.3", "--hop-s", "0.6"]
    argv += ["--rtts", "0,2", "--distance-s", "0.5", "--distance-rps", "60"]
    argv += ["--revocation-samples", "2", "--revocation-limit-s", "1"]
    argv += ["--rotation-s", "4", "--nginx-s", "1", "--shard-requests", "5000"]
    started = time.monotonic()
    with subprocess.Popen(
        argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as run:
        try:
            stdout, stderr = run.communicate(timeout=150)
        finally:
            run.kill()
    wall = time.monotonic() - started
    assert run.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert wall < 60, f"the smoke run took {wall:.0f} s"
    # Progress: phases, what is left, an ETA.
    assert "tasks," in stdout and "left, ETA" in stdout
    for name in ("report.md", "report.html", "model.txt", "knee_latency.png", "cost_vs_hops.png"):
        assert (out / name).stat().st_size > 0, name
    results = load(out / "results.json")
    assert set(SECTIONS) <= set(results) and not results.get("notes")
    assert [d["name"] for d in results["designs"]] == list(PAIR)

    knee = results["knee"]
    assert set(knee["designs"]) == set(PAIR)
    for design in knee["designs"].values():
        assert design["steps"] and all(s["requests"] > 0 for s in design["steps"])
        assert all((s["p99_ms"] or 0) > 0 and s["cpu_us_total"] > 0 for s in design["steps"])

    hops = results["hops"]["designs"]
    for name in PAIR:
        points = {p["hops"]: p for p in hops[name]}
        assert sorted(points) == [1, 2, 3]
        for count, point in points.items():
            assert point["failures"] == 0 and point["requests"] > 0
            assert point["checks_per_request"] == pytest.approx(count, abs=0.35)
        assert points[3]["cpu_us_total"] > points[1]["cpu_us_total"] > 0
    session_ops = {p["hops"]: p["store_ops_per_request"]["session_store"] for p in hops["session"]}
    assert session_ops[2] > 1.5 and session_ops[1] > 0.7  # every verifying hop asks the store
    assert all(p["store_ops_per_request"]["session_store"] < 0.05 for p in hops["jwt-push"])
    assert set(results["hops"]["fits"]) == set(PAIR)

    distance = results["distance"]
    assert distance["method"] in ("netem", "proxy") and distance["method_note"]
    near, far = sorted(distance["designs"]["session"], key=lambda p: p["added_rtt_ms"])
    assert far["measured_rtt_ms"] > near["measured_rtt_ms"] + 1.0
    assert "jwt-push" not in distance["designs"]  # no store call per request: not moved

    for name in PAIR:
        lag = results["revocation"][name]
        assert lag["samples"] == 2 and not lag["until_exp"] and not lag["errors"]
        assert {"gateway", "auth", "orders-1", "orders-2"} <= set(lag["hops"])
        assert all(0 < (h["max_ms"] or 0) < 1000 for h in lag["hops"].values())

    (rotation,) = results["rotation"]
    outcome = {k: v for k, v in rotation.items() if k != "segment"}
    assert rotation["ok"] and rotation["failures"] == 0 and rotation["requests"] > 50, outcome
    assert rotation["old_kid"] != rotation["new_kid"]
    assert set(rotation["old_token"].values()) == {200} == set(rotation["new_token"].values())
    assert 1 <= rotation["jwks_fetches"] <= rotation["verifiers"]

    shards = results["shards"]
    assert shards is not None and shards["per_shard_ops"] > 1000
    nginx = results["nginx"]
    assert nginx is not None
    if shutil.which("nginx") and shutil.which("wrk"):
        assert nginx["available"], nginx["note"]
        assert nginx["ratio"] is not None and nginx["ratio"] > 1.0
        # The bare forward on aiohttp's server is measured beside them.
        assert nginx["cpu_us_per_request"]["aiohttp-floor"] > 0, nginx
        assert nginx.get("ratio_floor") is not None, nginx
        # Two interleaved rounds; each proxy's figure is its least disturbed round.
        for name, figures in nginx["cpu_us_rounds"].items():
            assert len(figures) == 2 and nginx["cpu_us_per_request"][name] == min(figures), nginx
            # Of that round, the kernel's part: some, and less than the whole.
            assert 0 < nginx["cpu_us_system"][name] < min(figures), nginx
    # Nothing left behind: the namespace (named after the run's pid) and its veth are gone.
    assert f"{PREFIX}{run.pid}" not in _namespaces()
