"""The comparison run behind `make bench`: sessions vs JWT (revocation off and push), measured.

Starts the local stack on free ports (or targets `--host`), creates the load-test users, runs
Locust headless for each mode with the same users and offered load, interleaved over rounds,
and around each phase scrapes every service's /metrics and Redis INFO, so that CPU per request
and store operations per request come from the servers, not from wall-clock throughput alone.
Then the experiments: store distance, revocation latency, store outage, login cost and
credential size. Results go to reports/<timestamp>/ and reports/latest/ (see loadtests.report).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

from loadtests import microbench, report
from loadtests.delayproxy import DelayProxy
from services.common.settings import REPO_ROOT
from services.stack import Ports, Stack, ensure_user, http_json, redis_ping

USER_PREFIX = "bench"
PASSWORD = "bench-password-1"  # noqa: S105 - throwaway load-test accounts
MODES = {"session": "SessionUser", "jwt-off": "JwtOffUser", "jwt-push": "JwtPushUser"}
REVOCATION_OF = {"session": "push", "jwt-off": "off", "jwt-push": "push"}
SERVICE_ROUTES_SKIPPED = {"/metrics", "/healthz", "/readyz"}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- scraping -------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """Counters read from every service and store at one moment."""

    at: float
    cpu: dict[str, float] = field(default_factory=dict)  # service -> process CPU seconds
    requests: dict[str, float] = field(default_factory=dict)  # service -> answered requests
    auth_checks: dict[str, float] = field(default_factory=dict)  # service -> ok verifications
    auth_seconds: dict[str, tuple[float, float]] = field(
        default_factory=dict
    )  # service -> (sum, count)
    store_calls: dict[str, float] = field(default_factory=dict)  # store -> commands
    store_usec: dict[str, float] = field(default_factory=dict)  # store -> usec inside Redis
    store_cpu: dict[str, float] = field(default_factory=dict)  # store -> Redis CPU seconds


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own stack
        return str(response.read().decode())


def scrape_service(text: str) -> tuple[float, float, float, tuple[float, float]]:
    cpu = requests = checks = auth_sum = auth_count = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "process_cpu_seconds_total":
                cpu += sample.value
            elif sample.name == "http_requests_total":
                if sample.labels.get("route") not in SERVICE_ROUTES_SKIPPED:
                    requests += sample.value
            elif sample.name == "auth_checks_total" and sample.labels.get("result") == "ok":
                checks += sample.value
            elif sample.name == "auth_check_duration_seconds_sum":
                auth_sum += sample.value
            elif sample.name == "auth_check_duration_seconds_count":
                auth_count += sample.value
    return cpu, requests, checks, (auth_sum, auth_count)


def redis_info(port: int) -> dict[str, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"INFO all\r\n")
        header = b""
        while not header.endswith(b"\r\n"):
            header += sock.recv(1)
        size = int(header[1:-2])
        body = b""
        while len(body) < size + 2:
            body += sock.recv(65536)
    info: dict[str, str] = {}
    for line in body.decode().splitlines():
        if ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            info[key] = value
    return info


def scrape_store(port: int) -> tuple[float, float, float]:
    """Commands served, microseconds spent in them, CPU seconds (INFO commandstats, cpu)."""
    info = redis_info(port)
    calls = usec = 0.0
    for key, value in info.items():
        if key.startswith("cmdstat_") and key not in {"cmdstat_info", "cmdstat_ping"}:
            stats = dict(part.split("=") for part in value.split(","))
            calls += float(stats["calls"])
            usec += float(stats["usec"])
    cpu = float(info.get("used_cpu_user", 0)) + float(info.get("used_cpu_sys", 0))
    return calls, usec, cpu


@dataclass
class Target:
    """Where the services and stores answer; a Stack, or a --host with optional URLs."""

    gateway: str
    services: dict[str, str]  # name -> base URL for /metrics
    stores: dict[str, int]  # name -> local Redis port (only when we can reach it)

    def snapshot(self) -> Snapshot:
        snap = Snapshot(at=time.monotonic())
        for name, url in self.services.items():
            service = name.split("-")[0]  # orders-1, orders-2 -> orders
            cpu, requests, checks, (auth_sum, auth_count) = scrape_service(_get(url + "/metrics"))
            snap.cpu[service] = snap.cpu.get(service, 0.0) + cpu
            snap.requests[service] = snap.requests.get(service, 0.0) + requests
            snap.auth_checks[service] = snap.auth_checks.get(service, 0.0) + checks
            s, c = snap.auth_seconds.get(service, (0.0, 0.0))
            snap.auth_seconds[service] = (s + auth_sum, c + auth_count)
        for name, port in self.stores.items():
            snap.store_calls[name], snap.store_usec[name], snap.store_cpu[name] = scrape_store(port)
        return snap


@dataclass(frozen=True)
class Idle:
    """CPU seconds per second each process burns with no traffic (timers, health checks)."""

    cpu: dict[str, float]
    store_cpu: dict[str, float]

    @classmethod
    def measure(cls, target: Target, seconds: float) -> Idle:
        before = target.snapshot()
        time.sleep(seconds)
        after = target.snapshot()
        wall = after.at - before.at
        return cls(
            {s: max(after.cpu[s] - before.cpu.get(s, 0.0), 0.0) / wall for s in after.cpu},
            {
                s: max(after.store_cpu[s] - before.store_cpu.get(s, 0.0), 0.0) / wall
                for s in after.store_cpu
            },
        )


NO_IDLE = Idle({}, {})


def delta(
    before: Snapshot, after: Snapshot, locust_cpu: float, idle: Idle = NO_IDLE
) -> dict[str, Any]:
    """Per-request costs over a window, normalised by the requests the gateway answered.

    CPU figures have the idle baseline (measured in the same run) taken out, so they are the
    cost of the traffic, not of the timers that run anyway.
    """
    requests = after.requests.get("gateway", 0.0) - before.requests.get("gateway", 0.0)
    wall = after.at - before.at
    per = max(requests, 1.0)

    def cpu_us(spent: float, idle_rate: float) -> float:
        return round(max(spent - idle_rate * wall, 0.0) / per * 1e6, 1)

    out: dict[str, Any] = {
        "window_s": round(wall, 3),
        "gateway_requests": requests,
        "gateway_rps": round(requests / wall, 1) if wall else 0.0,
        "cpu_us_per_request": {
            s: cpu_us(after.cpu[s] - before.cpu.get(s, 0.0), idle.cpu.get(s, 0.0))
            for s in after.cpu
        },
        "auth_checks_per_request": {
            s: round((after.auth_checks[s] - before.auth_checks.get(s, 0.0)) / per, 3)
            for s in after.auth_checks
        },
        "auth_check_us": {},
        "store_ops_per_request": {
            s: round((after.store_calls[s] - before.store_calls.get(s, 0.0)) / per, 3)
            for s in after.store_calls
        },
        "store_usec_per_call": {},
        "store_cpu_us_per_request": {
            s: cpu_us(after.store_cpu[s] - before.store_cpu.get(s, 0.0), idle.store_cpu.get(s, 0.0))
            for s in after.store_cpu
        },
        "locust_cpu_fraction": round(locust_cpu / wall, 3) if wall else 0.0,
    }
    for s, (total, count) in after.auth_seconds.items():
        b_total, b_count = before.auth_seconds.get(s, (0.0, 0.0))
        if count - b_count > 0:
            out["auth_check_us"][s] = round((total - b_total) / (count - b_count) * 1e6, 1)
    for s in after.store_calls:
        calls = after.store_calls[s] - before.store_calls.get(s, 0.0)
        if calls > 0:
            out["store_usec_per_call"][s] = round(
                (after.store_usec[s] - before.store_usec.get(s, 0.0)) / calls, 2
            )
    return out


# -- Locust phases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    users: int
    user_rps: float
    duration: float
    warmup: float


def read_locust_stats(prefix: Path) -> dict[str, Any]:
    with (prefix.parent / f"{prefix.name}_stats.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    return {
        "requests": int(total["Request Count"]),
        "failures": int(total["Failure Count"]),
        "rps": round(float(total["Requests/s"]), 1),
        "p50_ms": float(total["50%"]),
        "p95_ms": float(total["95%"]),
        "p99_ms": float(total["99%"]),
        "avg_ms": round(float(total["Average Response Time"]), 2),
        "by_name": {
            r["Name"]: {
                "requests": int(r["Request Count"]),
                "p50_ms": float(r["50%"]),
                "p99_ms": float(r["99%"]),
            }
            for r in rows
            if r["Name"] != "Aggregated"
        },
    }


def run_phase(
    target: Target, mode: str, load: Load, workdir: Path, label: str, idle: Idle = NO_IDLE
) -> dict[str, Any]:
    """One Locust run; the measurement window starts after spawn and warm-up."""
    prefix = workdir / label
    env = {
        **os.environ,
        "AUTHSCALE_USER_PREFIX": USER_PREFIX,
        "AUTHSCALE_USER_COUNT": str(load.users),
        "AUTHSCALE_PASSWORD": PASSWORD,
        "AUTHSCALE_USER_RPS": str(load.user_rps),
    }
    run_time = load.warmup + load.duration + 1
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(REPO_ROOT / "loadtests" / "locustfile.py"),
        "--headless",
        "-u",
        str(load.users),
        "-r",
        str(load.users),
        "-t",
        f"{run_time:.0f}s",
        "--host",
        target.gateway,
        "--csv",
        str(prefix),
        "--only-summary",
        "--reset-stats",
        "--loglevel",
        "ERROR",
        "--stop-timeout",
        "2",
        MODES[mode],
    ]
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=str(REPO_ROOT),
        stdout=subprocess.DEVNULL,
        stderr=(workdir / f"{label}.locust.log").open("w"),
    )
    locust = psutil.Process(process.pid)
    time.sleep(load.warmup)  # spawn, logins and warm-up stay outside the window
    before = target.snapshot()
    cpu_before = sum(locust.cpu_times()[:2])
    time.sleep(load.duration)
    cpu_after = sum(locust.cpu_times()[:2])
    after = target.snapshot()
    try:
        process.wait(timeout=run_time + 30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    result = {
        "mode": mode,
        "label": label,
        **read_locust_stats(prefix),
        **delta(before, after, cpu_after - cpu_before, idle),
    }
    result["locust_saturated"] = result["locust_cpu_fraction"] > 0.9
    flag = "  ** Locust was the limit **" if result["locust_saturated"] else ""
    log(
        f"{label}: {result['rps']} req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"{result['failures']} failures, Locust CPU {result['locust_cpu_fraction']:.0%}{flag}"
    )
    return result


# -- experiments --------------------------------------------------------------------------------


class Client:
    """Logs in per mode and answers 'is this credential still accepted?' through the gateway."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway

    def login(self, mode: str, username: str) -> dict[str, str]:
        if mode == "session":
            request = urllib.request.Request(  # noqa: S310
                f"{self.gateway}/auth/session",
                data=json.dumps({"username": username, "password": PASSWORD}).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                cookie = response.headers["Set-Cookie"].split(";")[0]
                csrf = json.loads(response.read())["csrf_token"]
            return {"Cookie": cookie, "X-CSRF-Token": csrf}
        status, body = http_json(
            "POST", f"{self.gateway}/auth/token", {"username": username, "password": PASSWORD}
        )
        assert status == 200, body
        assert isinstance(body, dict)
        return {"Authorization": f"Bearer {body['access_token']}"}

    def status(
        self, headers: dict[str, str], path: str = "/orders?limit=1", timeout: float = 5.0
    ) -> tuple[int, float]:
        request = urllib.request.Request(f"{self.gateway}{path}", headers=headers)  # noqa: S310
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                response.read()
                code = int(response.status)
        except urllib.error.HTTPError as error:
            error.read()
            code = error.code
        except (urllib.error.URLError, TimeoutError, OSError):
            code = 0  # no answer in time
        return code, time.perf_counter() - started


def revocation_latency(client: Client, mode: str, username: str, limit: float) -> dict[str, Any]:
    headers = client.login(mode, username)
    assert client.status(headers)[0] == 200
    status, _ = http_json("POST", f"{client.gateway}/auth/logout", None, headers)
    assert status == 204, status
    started = time.perf_counter()
    polls = 0
    while time.perf_counter() - started < limit:
        polls += 1
        code, _ = client.status(headers)
        if code == 401:
            return {
                "mode": mode,
                "refused_after_ms": round((time.perf_counter() - started) * 1000, 2),
                "polls": polls,
            }
    return {"mode": mode, "refused_after_ms": None, "polls": polls, "still_accepted_after_s": limit}


def stall(port: int, seconds: float) -> threading.Thread:
    def run() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=seconds + 5) as sock:
            sock.sendall(f"DEBUG SLEEP {seconds}\r\n".encode())
            sock.recv(64)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def probe_modes(
    client: Client, credentials: dict[str, dict[str, str]], tries: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode, headers in credentials.items():
        answers = [client.status(headers) for _ in range(tries)]
        statuses: dict[str, int] = {}
        for code, _ in answers:
            statuses[str(code)] = statuses.get(str(code), 0) + 1
        out[mode] = {"statuses": statuses, "max_ms": round(max(s for _, s in answers) * 1000, 1)}
    return out


def store_outage(stack: Stack, client: Client, username: str) -> dict[str, Any]:
    credentials = {mode: client.login(mode, username) for mode in ("session", "jwt-push")}
    port = stack.components["session-store"].port
    result: dict[str, Any] = {}
    sleeper = stall(port, 2.0)
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline and redis_ping(port, timeout=0.05):
        time.sleep(0.01)
    result["stalled"] = probe_modes(client, credentials, 3)
    sleeper.join()
    stack.kill("session-store")
    result["down"] = probe_modes(client, credentials, 5)
    login, seconds = _timed_login(client, username)
    result["down"]["jwt login"] = {"statuses": {str(login): 1}, "max_ms": round(seconds * 1000, 1)}
    stack.start_component("session-store")
    stack.wait_ready("session-store")
    return result


def _timed_login(client: Client, username: str) -> tuple[int, float]:
    started = time.perf_counter()
    status, _ = http_json(
        "POST", f"{client.gateway}/auth/token", {"username": username, "password": PASSWORD}
    )
    return status, time.perf_counter() - started


def login_cost(target: Target, client: Client, username: str, count: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode, path in (("jwt", "/auth/token"), ("session", "/auth/session")):
        before = target.snapshot()
        times = []
        for _ in range(count):
            started = time.perf_counter()
            status, _ = http_json(
                "POST", f"{client.gateway}{path}", {"username": username, "password": PASSWORD}
            )
            times.append(time.perf_counter() - started)
            assert status == 200, status
        after = target.snapshot()
        times.sort()
        out[mode] = {
            "p50_ms": round(times[len(times) // 2] * 1000, 2),
            # Only known when auth's own /metrics is reachable (not with --host).
            "auth_cpu_ms_per_login": (
                round((after.cpu["auth"] - before.cpu["auth"]) / count * 1000, 2)
                if "auth" in after.cpu
                else None
            ),
        }
    return out


def credential_size(client: Client, username: str) -> dict[str, Any]:
    session = client.login("session", username)
    jwt = client.login("jwt-push", username)
    cookie = len("Cookie: ") + len(session["Cookie"]) + 2
    csrf = len("X-CSRF-Token: ") + len(session["X-CSRF-Token"]) + 2
    bearer = len("Authorization: ") + len(jwt["Authorization"]) + 2
    return {
        "session": {"safe_request_bytes": cookie, "unsafe_request_bytes": cookie + csrf},
        "jwt": {"safe_request_bytes": bearer, "unsafe_request_bytes": bearer},
    }


def measured_rtt_ms(port: int, n: int = 200) -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            sock.sendall(b"PING\r\n")
            sock.recv(16)
            samples.append(time.perf_counter() - started)
    samples.sort()
    return round(samples[len(samples) // 2] * 1000, 3)


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Options:
    host: str | None
    users: int
    user_rps: float
    duration: float
    warmup: float
    rounds: int
    distances: list[float]
    distance_duration: float
    out: Path
    microbench_n: int


def target_revocation(gateway: str) -> str:
    for family in text_string_to_metric_families(_get(gateway + "/metrics")):
        for sample in family.samples:
            if sample.name == "authscale_info":
                return str(sample.labels["jwt_revocation"])
    return "push"


def phase_plan(rounds: int) -> list[str]:
    """Interleave the modes, reversing the order every other round, so drift hits all alike."""
    plan: list[str] = []
    for index in range(rounds):
        order = ["jwt-off", "session", "jwt-push"]
        plan += order if index % 2 == 0 else order[::-1]
    return plan


def run(options: Options) -> Path:
    started = dt.datetime.now(dt.UTC)
    workdir = Path(tempfile.mkdtemp(prefix="authscale-bench-"))
    stack: Stack | None = None
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": sys.platform,
        },
        "load": {
            "users": options.users,
            "user_rps": options.user_rps,
            "duration_s": options.duration,
            "warmup_s": options.warmup,
            "rounds": options.rounds,
        },
        "target": options.host,
        "phases": [],
        "distance": [],
        "revocation": [],
        "outage": None,
        "login": None,
        "credential_size": None,
        "microbench": [],
    }
    try:
        if options.host:
            target = Target(options.host.rstrip("/"), {"gateway": options.host.rstrip("/")}, {})
            log(f"targeting {target.gateway}: server-side figures come from the gateway only")
        else:
            log("starting the local stack on free ports")
            stack = Stack(
                ports=Ports.free(),
                workdir=workdir / "stack",
                keys_dir=workdir / "keys",
                log=(workdir / "stack.log").open("w"),
                env={"LOG_LEVEL": "WARNING"},
            )
            stack.start()
            target = Target(
                stack.gateway_url,
                {name: stack.url(name) for name in stack.service_names},
                {"session_store": stack.ports.session_store, "data_store": stack.ports.data_store},
            )
        client = Client(target.gateway)
        log(f"creating {options.users} load-test users")
        for index in range(options.users):
            ensure_user(target.gateway, f"{USER_PREFIX}-{index}", PASSWORD)
        ensure_user(target.gateway, "bench-probe", PASSWORD)

        log("measuring the idle CPU baseline")
        idle = Idle.measure(target, 3.0)
        results["idle_cpu_ms_per_s"] = {
            k: round(v * 1000, 2) for k, v in {**idle.cpu, **idle.store_cpu}.items()
        }
        current = "push"
        revocations_done: set[str] = set()
        plan = phase_plan(options.rounds)
        if stack is None:
            # A running stack has one revocation mode; measure the JWT class that matches it.
            current = target_revocation(target.gateway)
            plan = [m for m in plan if m == "session" or REVOCATION_OF[m] == current]
            log(
                f"the target runs JWT_REVOCATION={current}: phases {', '.join(dict.fromkeys(plan))}"
            )
        for number, mode in enumerate(plan, start=1):
            wanted = REVOCATION_OF[mode]
            if stack is not None and wanted != current:
                log(f"restarting the services with JWT_REVOCATION={wanted}")
                stack.reconfigure(JWT_REVOCATION=wanted)
                current = wanted
            log(f"phase {number}/{len(plan)}: {mode}")
            load = Load(options.users, options.user_rps, options.duration, options.warmup)
            results["phases"].append(
                run_phase(target, mode, load, workdir, f"phase{number}-{mode}", idle)
            )
            if mode not in revocations_done:
                revocations_done.add(mode)
                results["revocation"].append(revocation_latency(client, mode, "bench-probe", 3.0))
                results["revocation"][-1]["jwt_revocation"] = current

        if stack is not None:
            if current != "push":
                stack.reconfigure(JWT_REVOCATION="push")
            log("store outage: stalling, then stopping the session store")
            results["outage"] = store_outage(stack, client, "bench-probe")
            if options.distances:
                proxy = DelayProxy(stack.ports.session_store).start()
                try:
                    stack.reconfigure(SESSION_STORE_URL=proxy.url)
                    for delay in options.distances:
                        proxy.delay_ms = delay
                        rtt = measured_rtt_ms(proxy.port)
                        for mode in ("session", "jwt-push"):
                            load = Load(
                                options.users,
                                options.user_rps,
                                options.distance_duration,
                                options.warmup,
                            )
                            phase = run_phase(
                                target, mode, load, workdir, f"distance{delay}-{mode}", idle
                            )
                            phase.update({"added_rtt_ms": delay, "measured_store_rtt_ms": rtt})
                            results["distance"].append(phase)
                finally:
                    proxy.close()
                    stack.reconfigure(
                        SESSION_STORE_URL=f"redis://127.0.0.1:{stack.ports.session_store}/0"
                    )
        results["login"] = login_cost(target, client, "bench-probe", 10)
        results["credential_size"] = credential_size(client, "bench-probe")
        if options.microbench_n:
            log("micro-benchmark of the primitives")
            results["microbench"] = [
                r.as_dict() for r in asyncio.run(microbench.run(options.microbench_n, 3))
            ]
    finally:
        if stack is not None:
            stack.stop()
            stack.log.close()
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    out = options.out / stamp
    report.write(results, out)
    latest = options.out / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.exists():
        shutil.rmtree(latest)
    shutil.copytree(out, latest)
    shutil.rmtree(workdir, ignore_errors=True)
    return out


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", help="benchmark a running gateway (e.g. docker compose) instead")
    parser.add_argument(
        "--users", type=int, default=20, help="simulated users per phase (default 20)"
    )
    parser.add_argument(
        "--user-rps", type=float, default=15.0, help="requests/s each user offers (default 15)"
    )
    parser.add_argument(
        "--duration", type=float, default=15.0, help="measured seconds per phase (default 15)"
    )
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds before measuring (default 3)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds of all modes (default 2)"
    )
    parser.add_argument(
        "--distances",
        default="0,0.5,2",
        help="added session-store round trips in ms, comma-separated ('' to skip)",
    )
    parser.add_argument("--distance-duration", type=float, default=8.0)
    parser.add_argument(
        "--long", action="store_true", help="60 s phases, 3 rounds (about 20 minutes)"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--microbench-n", type=int, default=500, help="calls per round (0 skips)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.long:
        args.duration, args.rounds, args.distance_duration = 60.0, 3, 30.0
    options = Options(
        host=args.host,
        users=args.users,
        user_rps=args.user_rps,
        duration=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
        distances=[float(d) for d in args.distances.split(",") if d.strip()],
        distance_duration=args.distance_duration,
        out=args.out,
        microbench_n=args.microbench_n,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = run(options)
    print(f"\nreport: {out / 'report.md'}\n        {options.out / 'latest' / 'report.md'}")
    print((out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
