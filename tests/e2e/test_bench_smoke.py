"""A real `python -m loadtests.measure --quick --long` run: the quick curves of every design
and the control (`make bench BENCH_ARGS=--quick`), then the four longer experiments on the same
run's services. Its figures are what each design is built to do, and each experiment is in
results.json with the numbers it is built to show.

Counts, not speeds: store commands per request, hops, which credential a logout ends. The speed
figures of a quick run are single short windows (the report says so); they are checked for
presence and sense only. An experiment whose tool is missing here (nginx, redis-cli) must be
recorded as skipped with the reason; everything else must have been measured.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadtests import microbench
from loadtests.measure import gauge
from loadtests.measure.plan import COMMON_RATE_SHARE, COMMON_RATE_STEP, common_rate
from loadtests.measure.schema import CONTROL, HOPS, SCHEMA_VERSION, load
from loadtests.modes import JWT_PUSH, MODES, settings_groups
from services.common.settings import REPO_ROOT

TRACED = ("session", "jwt-push")  # --long's traced windows: one design of each kind


@pytest.fixture(scope="module")
def quick_long(
    tmp_path_factory: pytest.TempPathFactory, redis_available: None
) -> tuple[Path, float]:
    """One `--quick --long` run for both tests: the quick curves of every design, then the
    longer experiments on the same run's services (one start-up, not two)."""
    out = tmp_path_factory.mktemp("quick-long")
    argv = [sys.executable, "-m", "loadtests.measure", "--quick", "--long", "--out", str(out)]
    argv += ["--traced-designs", ",".join(TRACED)]
    began = time.monotonic()
    done = subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=540, check=False
    )
    wall = time.monotonic() - began
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"quick --long run: {wall:.0f} s")
    return out, wall


@pytest.mark.timeout(600)
def test_the_quick_bench_writes_every_figure(quick_long: tuple[Path, float]) -> None:
    tmp_path, _ = quick_long
    for name in ("results.json", "raw.json", "report.html", "report.md"):
        assert (tmp_path / name).exists(), name
    results = load(tmp_path / "results.json")
    assert results["schema_version"] == SCHEMA_VERSION
    env = results["environment"]
    for key in ("cpus", "load_cpus", "system_cpus", "python", "packages", "load_average"):
        assert key in env, key
    if (env["cpus"] or 0) >= 2:
        # One CPU each on this machine: the load never ran where the system did.
        assert env["isolated"] and not set(env["load_cpus"]) & set(env["system_cpus"])
    assert {"aiohttp", "redis", "PyJWT"} <= set(env["packages"])
    if env.get("kept_awake"):
        # The spinners' laps: every CPU-per-request window (the system under half busy, the
        # spinners running in its gaps) measured how fast the system's CPUs ran.
        cpu_windows = [w for w in results["windows"] if w["phase"] == gauge.PHASE]
        laps = [w.get("spin_us_per_lap", 0) for w in cpu_windows]
        assert laps and all(lap > 0 for lap in laps)

    designs = results["designs"]
    assert set(designs) == {m.name for m in MODES} | {CONTROL}
    for name, design in designs.items():
        assert set(design["hops"]) == {str(k) for k in HOPS}, name
        if name == CONTROL:
            assert design["capacity_rps"] is None and design["auth_cpu_us_per_hop"] is None
            assert "login" not in design and "credential_bytes" not in design  # no credential
            continue
        capacity = design["capacity_rps"]
        assert capacity is not None and capacity["median"] > 0, name
        cpu = design["cpu_us_per_request"]
        assert cpu is not None and cpu["median"] > 0, name
        assert design["auth_cpu_us_per_hop"] is not None, name
        assert "model_error_pct" in design, name
        # The write, its own request type: every order accepted (CSRF echoed for cookies).
        post = design.get("post")
        assert post is not None and post["failures"] == 0, (name, post)
        assert post["cpu_us_per_request"]["median"] > 0, (name, post)
        # auth checks the caller's credential on a write: its CPU is in the figure.
        assert post["cpu_by_process"]["auth"] > 0, (name, post)
        # The login, its own request type: every bench user's login answered 200 (no 429 from
        # the failure limit, no 503 from shedding), and auth's work is in its CPU.
        login = design.get("login")
        assert login is not None and login["failures"] == 0, (name, login)
        assert login["cpu_us_per_request"]["median"] > 0, login
        assert login["cpu_by_process"]["auth"] > 0, login
        assert (design.get("credential_bytes") or 0) > 0, name

    # CPU per request at one rate for every design, well inside every capacity run: the
    # option's, or lower where a knee asks for it (plan.common_rate).
    method = results["method"]
    knees = [k for d in designs.values() if d["capacity_rps"] for k in d["capacity_rps"]["runs"]]
    used = method["common_rps_used"]
    assert used == common_rate(method["common_rps"], knees)
    # A lowered rate is a note of the run (the report prints its notes).
    lowered = any("plan.common_rate" in note for note in results.get("notes", []))
    assert lowered is (used < method["common_rps"])
    # The paced checks were timed call by call (the report says how, by this).
    assert method["microbench_placement"].get("timing") == microbench.PACED_TIMING
    cpus = [d["cpu_us_per_request"] for n, d in designs.items() if n != CONTROL]
    assert {c["offered_rps"] if c else None for c in cpus} == {used}
    assert all(
        used <= COMMON_RATE_SHARE * k
        for k in knees
        if k and k * COMMON_RATE_SHARE >= COMMON_RATE_STEP
    )

    # A JWT (claims and an RS256 signature) is larger than a session id and its CSRF token.
    session_bytes = designs["session"].get("credential_bytes") or 0
    for mode in MODES:
        if mode.credential.kind == "jwt":
            size = designs[mode.name].get("credential_bytes") or 0
            assert size > session_bytes, (mode.name, size, session_bytes)

    # The session store: the plain session asks it at the gateway and at orders on every
    # request (2 per GET /orders), and at the gateway and every relay of the chain (k + 1);
    # the cache and the hybrid answer from memory after the first look-up; JWTs never ask.
    def ops(name: str) -> float:
        return designs[name]["store_ops_per_request"]

    assert 1.8 <= ops("session") <= 2.2
    for name in ("session-cached", "hybrid", "jwt-push", "jwt-off", "jwt-cookie"):
        assert ops(name) < 0.1, (name, ops(name))
    for k in HOPS:
        point = designs["session"]["hops"][str(k)]
        chain = point["store_ops_per_request"]
        # Operations over requests, each counted in its own reading around the window: exact
        # but for a request either way in each (a quick window holds 40) and the requests in flight
        # at its edges (meter.served_in: about p50 / window of them). Quick runs read k = 5 at
        # 5.79-6.17 (p50 6-7 ms), and 6.21 in a window the machine stalled in (p50 34 ms).
        window_s = method["chain_window_s"]
        share = 2 / (method["chain_rps"] * window_s) + point["p50_ms"] / 1e3 / window_s
        assert abs(chain - (k + 1)) <= (k + 1) * share, (k, chain, point["p50_ms"])
        assert designs[CONTROL]["hops"][str(k)]["store_ops_per_request"] < 0.05
        assert designs["jwt-push"]["hops"][str(k)]["store_ops_per_request"] < 0.05

    # Revocation: jwt-off's credential lives until it expires; every other design refuses it.
    # Measured: a hop accepted it after the logout.
    assert designs["jwt-off"]["revocation_lag_ms"] is None
    assert designs["jwt-off"].get("revoked_until_exp") is True
    for name in ("session", "session-cached", "hybrid", "jwt-push", "jwt-cookie"):
        lag = designs[name]["revocation_lag_ms"]
        assert lag is not None and 0 <= lag["p99"] < 1500, (name, lag)
        assert designs[name].get("revoked_until_exp") is False, name

    # Distance (the first settings group in a quick run): the plain session waits for the
    # store twice per request, so 2 ms more round trip costs it at least 2 ms of p50.
    points = {p["added_rtt_ms"]: p for p in designs["session"]["distance"]}
    assert set(points) == {0.0, 2.0}
    assert points[2.0]["p50_ms"] - points[0.0]["p50_ms"] >= 2 * 1.5

    # Side by side: one start of the services per settings group, all running at once, and
    # each design's capacity and CPU windows on the start of its own group. A window's
    # `config` is the start its meter measured (a design measured on another group's start
    # would be that group's design under its name); every capacity and CPU window, of every
    # start, comes before the first write window (started one after another, the first start's
    # writes came before the next start's capacity).
    idle = results["method"]["idle"]
    starts = {i["config"]: set(i["designs"]) for i in idle}
    local = [i["config"] for i in idle if not i["distant_store"]]
    assert len(local) == len(settings_groups(MODES)), starts
    windows = results["windows"]
    measured = [n for n, w in enumerate(windows) if w["phase"] in ("capacity", "cpu")]
    assert {windows[n]["config"] for n in measured} == set(local)
    for n in measured:
        assert windows[n]["design"] in starts[windows[n]["config"]], windows[n]["design"]
    first_post = min(n for n, w in enumerate(windows) if w["phase"] == "post")
    assert max(measured) < first_post

    # The analysis ran: checks, comparisons, advice and the model's points are there.
    assert {c["name"] for c in results.get("checks", [])} >= {
        "control_cheapest",
        "same_check_agree",
        "session_hop_vs_jwt",
    }
    assert results.get("comparisons") and results.get("advice")
    assert results.get("model", {}).get("points")
    html = (tmp_path / "report.html").read_text()
    assert "<img" in html and "http://" not in html.replace("http://www.w3.org", "")
    json.loads((tmp_path / "raw.json").read_text())


@pytest.mark.timeout(600)
def test_the_long_experiments_measure_what_they_are_built_to(
    quick_long: tuple[Path, float],
) -> None:
    out, _ = quick_long
    results = load(out / "results.json")
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
    # Every JWT design that runs on the present settings (jwt-push and jwt-cookie): each one's
    # window with old tokens, auth restarted with a new key in its middle; then the new tokens.
    group = [
        m.name for m in MODES if m.credential.kind == "jwt" and m.settings == JWT_PUSH.settings
    ]
    assert rotation["designs"] == group
    assert rotation["old_kid"] != rotation["new_kid"]
    assert [(w["design"], w["token"]) for w in rotation["windows"]] == [
        *((name, "old") for name in group),
        *((name, "new") for name in group),
    ]
    for window in rotation["windows"]:
        assert window["requests"] >= 0.9 * o["rotation_rps"] * o["rotation_s"], window
        assert window["failures"] == 0, window
    assert len(rotation["auth_restart_ms"]) == len(group)
    assert all(ms > 0 for ms in rotation["auth_restart_ms"])
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
    assert [t["design"] for t in traced] == list(TRACED)
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
    assert (out / "report.html").exists() and (out / "report.md").exists()
