"""The experiments beside the phases: revocation latency, store outage, store distance, login
cost and credential size. The outage and distance ones break or move the bench's own stack.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path

from loadtests.bench import stores
from loadtests.bench.client import Gateway
from loadtests.bench.phases import Load, run_phase
from loadtests.bench.results import (
    CredentialSize,
    DistancePhase,
    LoginCost,
    Outage,
    Probe,
    Revocation,
)
from loadtests.bench.scrape import Idle, Target
from loadtests.delayproxy import DelayProxy
from loadtests.modes import JWT_PUSH, SESSION, STANDS_FOR, Mode
from services.stack import Stack


def revocation_latency(
    gateway: Gateway, mode: Mode, username: str, limit: float, jwt_revocation: str
) -> Revocation:
    """Log out, then poll with the old credential until it is refused or `limit` s pass."""
    headers = gateway.login(mode, username)
    assert gateway.status(headers)[0] == 200
    status = gateway.logout(headers)
    assert status == 204, status
    started = time.perf_counter()
    polls = 0
    while time.perf_counter() - started < limit:
        polls += 1
        code, _ = gateway.status(headers)
        if code == 401:
            return {
                "mode": mode.name,
                "refused_after_ms": round((time.perf_counter() - started) * 1000, 2),
                "polls": polls,
                "jwt_revocation": jwt_revocation,
            }
    return {
        "mode": mode.name,
        "refused_after_ms": None,
        "polls": polls,
        "still_accepted_after_s": limit,
        "jwt_revocation": jwt_revocation,
    }


def probe(
    gateway: Gateway, credentials: Mapping[str, dict[str, str]], tries: int
) -> dict[str, Probe]:
    """`tries` requests with each mode's credential: the statuses seen and the slowest answer."""
    out: dict[str, Probe] = {}
    for mode, headers in credentials.items():
        answers = [gateway.status(headers) for _ in range(tries)]
        statuses: dict[str, int] = {}
        for code, _ in answers:
            statuses[str(code)] = statuses.get(str(code), 0) + 1
        out[mode] = {"statuses": statuses, "max_ms": round(max(s for _, s in answers) * 1000, 1)}
    return out


def store_outage(stack: Stack, gateway: Gateway, username: str) -> Outage:
    """Requests while the session store is stalled (DEBUG SLEEP 2), then stopped; then restart."""
    credentials = {
        mode.name: gateway.login(mode, username)
        for mode in (STANDS_FOR["session"], STANDS_FOR["jwt"])
    }
    port = stack.components["session-store"].port
    sleeper = threading.Thread(target=stores.sleep, args=(port, 2.0), daemon=True)
    sleeper.start()
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline and stores.answers(port, timeout=0.05):
        time.sleep(0.01)
    stalled = probe(gateway, credentials, 3)
    sleeper.join()
    stack.kill("session-store")
    down = probe(gateway, credentials, 5)
    login, seconds = gateway.timed_login("jwt", username)
    down["jwt login"] = {"statuses": {str(login.status): 1}, "max_ms": round(seconds * 1000, 1)}
    stack.start_component("session-store")
    stack.wait_ready("session-store")
    return {"stalled": stalled, "down": down}


def store_distance(
    stack: Stack, target: Target, load: Load, delays: list[float], workdir: Path, idle: Idle
) -> list[DistancePhase]:
    """Phases with the session store behind a proxy that adds each round trip in `delays`."""
    out: list[DistancePhase] = []
    proxy = DelayProxy(stack.ports.session_store).start()
    try:
        stack.reconfigure(SESSION_STORE_URL=proxy.url)
        for delay in delays:
            proxy.delay_ms = delay
            rtt = stores.median_rtt_ms(proxy.port)
            for mode in (SESSION, JWT_PUSH):
                phase = run_phase(target, mode, load, workdir, f"distance{delay}-{mode.name}", idle)
                out.append({**phase, "added_rtt_ms": delay, "measured_store_rtt_ms": rtt})
    finally:
        proxy.close()
        stack.reconfigure(SESSION_STORE_URL=f"redis://127.0.0.1:{stack.ports.session_store}/0")
    return out


def login_cost(target: Target, gateway: Gateway, username: str, count: int) -> dict[str, LoginCost]:
    """Median login time and auth's CPU per login, for each kind of credential."""
    out: dict[str, LoginCost] = {}
    for credential in ("jwt", "session"):
        before = target.snapshot()
        times = []
        for _ in range(count):
            reply, seconds = gateway.timed_login(credential, username)
            times.append(seconds)
            assert reply.status == 200, reply.status
        after = target.snapshot()
        times.sort()
        out[credential] = {
            "p50_ms": round(times[len(times) // 2] * 1000, 2),
            # Only known when auth's own /metrics is reachable (not with --host).
            "auth_cpu_ms_per_login": (
                round((after.cpu["auth"] - before.cpu["auth"]) / count * 1000, 2)
                if "auth" in after.cpu
                else None
            ),
        }
    return out


def credential_size(gateway: Gateway, username: str) -> dict[str, CredentialSize]:
    """Bytes of the header lines that carry each kind of credential."""
    session = gateway.login(STANDS_FOR["session"], username)
    jwt = gateway.login(STANDS_FOR["jwt"], username)
    cookie = len("Cookie: ") + len(session["Cookie"]) + 2
    csrf = len("X-CSRF-Token: ") + len(session["X-CSRF-Token"]) + 2
    bearer = len("Authorization: ") + len(jwt["Authorization"]) + 2
    return {
        "session": {"safe_request_bytes": cookie, "unsafe_request_bytes": cookie + csrf},
        "jwt": {"safe_request_bytes": bearer, "unsafe_request_bytes": bearer},
    }
