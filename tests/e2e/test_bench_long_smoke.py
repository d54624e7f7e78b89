"""A real `python -m loadtests.measure --quick --long` run on one settings group (session and
jwt-push, no distant store), then its four longer experiments: each is in results.json with
the numbers it is built to show. Counts, not speeds.

An experiment whose tool is missing here (nginx, redis-cli) must be recorded as skipped with
the reason; everything else must have been measured.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadtests.measure.schema import load
from services.common.settings import REPO_ROOT

DESIGNS = ("session", "jwt-push")  # one settings group: one start of the services


@pytest.mark.timeout(400)
def test_the_long_experiments_measure_what_they_are_built_to(
    tmp_path: Path, redis_available: None
) -> None:
    argv = [sys.executable, "-m", "loadtests.measure", "--quick", "--long", "--out", str(tmp_path)]
    argv += ["--designs", ",".join(DESIGNS), "--rtts", ""]
    began = time.monotonic()
    done = subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=360, check=False
    )
    print(f"quick --long run: {time.monotonic() - began:.0f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = load(tmp_path / "results.json")
    long = results.get("long")
    assert long is not None
    o = results["method"]
    skipped = long["skipped"]

    # nginx: both proxies answered every request of the same offered load, each paid CPU.
    nginx = long["nginx"]
    if shutil.which("nginx") is None:
        assert nginx is None and "nginx" in skipped["nginx"], skipped
    else:
        assert nginx is not None, skipped
        assert set(nginx["proxies"]) == {"nginx", "gateway"}
        for name, proxy in nginx["proxies"].items():
            expected = o["nginx_rps"] * o["nginx_s"]
            assert proxy["requests"] >= 0.9 * expected, (name, proxy)
            assert proxy["failures"] == 0, (name, proxy)
            assert proxy["cpu_us_per_request"] > 0, (name, proxy)
        assert nginx["ratio"] is not None and nginx["ratio"] > 0

    # Key rotation: no request fails while auth restarts with a new key, nor once the new
    # key's tokens arrive; old and new tokens are both accepted at every hop afterwards.
    rotation = long["rotation"]
    assert rotation is not None, skipped
    assert rotation["designs"] == ["jwt-push"]
    assert rotation["old_kid"] != rotation["new_kid"]
    assert [(w["design"], w["token"]) for w in rotation["windows"]] == [
        ("jwt-push", "old"),
        ("jwt-push", "new"),
    ]
    for window in rotation["windows"]:
        assert window["requests"] >= 0.9 * o["rotation_rps"] * o["rotation_s"], window
        assert window["failures"] == 0, window
    assert len(rotation["auth_restart_ms"]) == 1 and rotation["auth_restart_ms"][0] > 0
    hops = {key.split()[1] for key in rotation["old_token"]}
    assert {"gateway", "auth", "orders-1", "orders-2"} <= hops
    assert set(rotation["old_token"].values()) == {200}, rotation["old_token"]
    assert set(rotation["new_token"].values()) == {200}, rotation["new_token"]
    assert rotation["jwks_fetches"] >= 1  # the new kid was fetched from auth's JWKS

    # The cluster: the load spread over three primaries; a primary killed under load; its
    # sessions answered 503 (never 500) until its replica took over, then every one of them
    # again; a JWT never needed the store.
    failover = long["failover"]
    if shutil.which("redis-cli") is None:
        assert failover is None and "redis-cli" in skipped["failover"], skipped
    else:
        assert failover is not None, skipped
        assert (failover["primaries"], failover["replicas"]) == (3, 3)
        assert len(failover["share"]) == 3 and sum(failover["share"].values()) == pytest.approx(
            1.0, abs=0.01
        )
        assert failover["steady"]["failures"] == 0, failover["steady"]
        assert failover["requests"] >= 0.9 * o["failover_rps"] * o["failover_s"]
        recovered = failover["recovered_s"]
        assert recovered is not None and 0 < recovered < 30
        statuses = failover["session_statuses"]
        assert statuses.get("200") == 1 and sum(statuses.values()) > 1, statuses  # it failed
        assert set(statuses) <= {"200", "503"}, statuses
        assert set(failover["jwt_statuses"]) == {"200"}, failover["jwt_statuses"]
        assert failover["sessions_on_victim"] >= 1
        assert failover["sessions_back"] == failover["sessions_on_victim"]
        throughput = failover["throughput"]
        if shutil.which("redis-benchmark") is not None:
            assert throughput is not None and throughput["single_rps"] > 0

    # Traces: every design's window answered, and its spans attribute the work per hop: the
    # plain session asks the session store at each hop, a JWT never.
    traced = long["traced"]
    assert traced is not None, skipped
    assert [t["design"] for t in traced] == list(DESIGNS)
    for design in traced:
        assert design["failures"] == 0 and design["requests"] > 0, design
        assert design["spans"] > design["requests"] and design["traces"] >= design["requests"]
        assert set(design["hops"]) == {"gateway", "orders"}, design["hops"]
        for hop in design["hops"].values():
            assert hop["requests"] > 0 and hop["verify_p50_us"] > 0, hop
            calls = hop["store_calls_per_request"].get("session_store", 0.0)
            if design["design"] == "session":
                # One GET per request, and at most one sliding-timeout refresh per session
                # (8 logged-in users) in the window.
                assert 1.0 <= calls <= 1.0 + (8 + 1) / hop["requests"], hop
            else:
                assert calls == 0.0, hop

    tools = (("nginx", "nginx"), ("failover", "redis-cli"))
    assert set(skipped) == {name for name, tool in tools if shutil.which(tool) is None}, skipped
    assert (tmp_path / "report.html").exists() and (tmp_path / "report.md").exists()
