"""The experiments beside the phases: revocation latency, store outage, store distance, login
cost and credential size. The outage and distance ones break or move the bench's own stack.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from devstack.stack import Stack
from loadtests.bench import stores
from loadtests.bench.client import Gateway, get_status, internal_token, request
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
from loadtests.modes import (
    CREDENTIALS,
    HYBRID,
    JWT_PUSH,
    SESSION,
    SESSION_CACHED,
    SESSION_COOKIE,
    Credential,
    Mode,
    settings_groups,
)
from services.common.exchange import TOKEN_EXCHANGE_PATH
from services.common.exchange import request_body as exchange_request

# The designs whose latency depends on where the session store is (and jwt-push, which
# should not), measured against the store moved away.
DISTANCE_MODES: tuple[Mode, ...] = (SESSION, SESSION_CACHED, HYBRID, JWT_PUSH)

# -- revocation -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hop:
    """One service asked, with the credential it sees, whether the credential still works."""

    name: str
    url: str  # the whole URL of the GET
    headers: Mapping[str, str]


def revocation_hops(target: Target, mode: Mode, headers: Mapping[str, str]) -> list[Hop]:
    """The gateway, then (on the bench's own stack) every service behind it on its own address
    with the credential that service sees: the client's own, or for the hybrid an internal
    token minted for the session (auth keeps the cookie, but auth ends the session itself)."""
    hops = [Hop("gateway", target.gateway + "/orders?limit=1", headers)]
    inside: Mapping[str, str] = headers
    if mode.exchanges and "auth" in target.services:
        token = internal_token(target.services["auth"], headers["Cookie"])
        inside = {"Authorization": f"Bearer {token}"}
    for name, url in target.services.items():
        if name != "gateway":
            hops.append(Hop(name, url + ("/me" if name == "auth" else "/orders?limit=1"), inside))
    return hops


@dataclass(frozen=True, slots=True)
class HopLag:
    """One hop's answer to one logout: ms from the logout's answer until the first refusal
    (401) was answered (None: still accepted at the limit), and the polls it still accepted."""

    refused_ms: float | None
    accepted: int
    polls: int


def poll_until_refused(hop: Hop, started: float, limit: float) -> HopLag:
    accepted = polls = 0
    while time.perf_counter() - started < limit:
        polls += 1
        code, _ = get_status(hop.url, hop.headers)
        if code == 401:
            return HopLag(round((time.perf_counter() - started) * 1000, 2), accepted, polls)
        accepted += code == 200
    return HopLag(None, accepted, polls)


def revocation_sample(
    gateway: Gateway, target: Target, mode: Mode, username: str, limit: float
) -> dict[str, HopLag]:
    """Log in, use the credential at every hop, log out, then poll every hop at once (a thread
    each) with the old credential until each refuses it (401) or `limit` s pass."""
    headers = gateway.login(mode.credential, username)
    hops = revocation_hops(target, mode, headers)
    for hop in hops:  # every verifier has seen it (and, with a cache, holds it)
        code, _ = get_status(hop.url, hop.headers)
        assert code == 200, (mode.name, hop.name, code)
    with ThreadPoolExecutor(max_workers=len(hops)) as pool:
        status = gateway.logout(headers)
        assert status == 204, (mode.name, status)
        started = time.perf_counter()
        futures = {hop.name: pool.submit(poll_until_refused, hop, started, limit) for hop in hops}
        return {name: future.result() for name, future in futures.items()}


def _worst(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else max(v for v in values if v is not None)


def revocation_record(
    mode: Mode, samples: Sequence[Mapping[str, HopLag]], limit: float, settings: Mapping[str, str]
) -> Revocation:
    """The samples of one mode as one record: the slowest refusal, the median sample, by hop,
    and how many requests each hop still accepted after the logout."""
    per_sample = [_worst([h.refused_ms for h in s.values()]) for s in samples]
    worst = _worst(per_sample)
    names = list(samples[0])
    record: Revocation = {
        "mode": mode.name,
        "refused_after_ms": worst,
        "polls": sum(h.polls for s in samples for h in s.values()),
        "jwt_revocation": settings.get("JWT_REVOCATION", "?"),
        "samples": len(samples),
        "p50_ms": (
            None
            if worst is None
            else round(statistics.median(v for v in per_sample if v is not None), 2)
        ),
        "hops": {n: _worst([s[n].refused_ms for s in samples]) for n in names},
        "accepted_after_logout": {n: sum(s[n].accepted for s in samples) for n in names},
        "settings": dict(settings),
    }
    if worst is None:
        record["still_accepted_after_s"] = limit
    return record


# -- store outage -----------------------------------------------------------------------------


def probe(gateway: Gateway, headers: Mapping[str, str], tries: int) -> Probe:
    """`tries` requests with one credential: the statuses seen and the slowest answer."""
    answers = [gateway.status(headers) for _ in range(tries)]
    statuses: dict[str, int] = {}
    for code, _ in answers:
        statuses[str(code)] = statuses.get(str(code), 0) + 1
    return {"statuses": statuses, "max_ms": round(max(s for _, s in answers) * 1000, 1)}


def probe_all(
    gateway: Gateway, credentials: Mapping[str, Mapping[str, str]], tries: int
) -> dict[str, Probe]:
    """Every mode's probe at once, so that all of them fall inside a 2 s stall."""
    with ThreadPoolExecutor(max_workers=max(len(credentials), 1)) as pool:
        futures = {m: pool.submit(probe, gateway, h, tries) for m, h in credentials.items()}
        return {m: f.result() for m, f in futures.items()}


def store_outage(stack: Stack, gateway: Gateway, modes: Sequence[Mode], username: str) -> Outage:
    """Requests with each mode's credential while the session store is stalled (DEBUG SLEEP 2),
    then stopped; then the store is started again (empty) and the services waited for.

    The services run the settings `modes` share. Each credential is used a few times first, so
    every verifier on its way has seen it (a cache holds it, the hybrid's gateway holds its
    internal token): the stall then shows what a warm cache answers.
    """
    credentials = {m.name: gateway.login(m.credential, username) for m in modes}
    for headers in credentials.values():
        for _ in range(4):
            gateway.status(headers)
    port = stack.components["session-store"].port
    sleeper = threading.Thread(target=stores.sleep, args=(port, 2.0), daemon=True)
    sleeper.start()
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline and stores.answers(port, timeout=0.05):
        time.sleep(0.01)
    stalled = probe_all(gateway, credentials, 3)
    sleeper.join()
    stack.kill("session-store")
    down = probe_all(gateway, credentials, 5)
    for name in dict.fromkeys(m.credential.name for m in modes):
        credential = next(m.credential for m in modes if m.credential.name == name)
        login, seconds = gateway.timed_login(credential, username)
        down[f"{name} login"] = {
            "statuses": {str(login.status): 1},
            "max_ms": round(seconds * 1000, 1),
        }
    stack.start_component("session-store")
    stack.wait_ready("session-store")
    for name in stack.service_names:
        stack.wait_ready(name)
    # Ready is not yet recovered: a pooled connection to the old store fails once before it is
    # replaced. The next experiment starts once a login with each credential works again.
    for credential in {m.credential.name: m.credential for m in modes}.values():
        _until_login_works(gateway, credential, username, RECOVERY_S)
    return {"stalled": stalled, "down": down}


RECOVERY_S = 15.0  # how long the services may take to work again after the store is back


def _until_login_works(
    gateway: Gateway, credential: Credential, username: str, limit: float
) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            if gateway.timed_login(credential, username)[0].status == 200:
                return
        except OSError:
            pass  # reset or timed out: not back yet
        if time.monotonic() > deadline:
            raise RuntimeError(f"{credential.name} logins did not work again within {limit:g} s")
        time.sleep(0.05)


# -- distance ---------------------------------------------------------------------------------


def store_distance(
    stack: Stack,
    switch: Callable[[Mapping[str, str]], None],
    target: Target,
    load: Load,
    delays: list[float],
    workdir: Path,
    idle: Idle,
    modes: Sequence[Mode] = DISTANCE_MODES,
) -> list[DistancePhase]:
    """Phases with the session store behind a proxy that adds each round trip in `delays`, for
    each of `modes` under its own settings (`switch` restarts the services with them)."""
    out: list[DistancePhase] = []
    proxy = DelayProxy(stack.ports.session_store).start()
    try:
        for group in settings_groups(modes):
            switch({**group[0].settings, "SESSION_STORE_URL": proxy.url})
            for delay in delays:
                proxy.delay_ms = delay
                rtt = stores.median_rtt_ms(proxy.port)
                for mode in group:
                    label = f"distance{delay}-{mode.name}"
                    phase = run_phase(target, mode, load, workdir, label, idle)
                    out.append({**phase, "added_rtt_ms": delay, "measured_store_rtt_ms": rtt})
    finally:
        switch({"SESSION_STORE_URL": f"redis://127.0.0.1:{stack.ports.session_store}/0"})
        proxy.close()
    return out


# -- login cost and credential size -----------------------------------------------------------


def _auth_cpu_ms(target: Target, calls: Callable[[], list[float]], count: int) -> LoginCost:
    before = target.snapshot()
    times = sorted(calls())
    after = target.snapshot()
    return {
        "p50_ms": round(times[len(times) // 2] * 1000, 2),
        # Only known when auth's own /metrics is reachable (not with --host).
        "auth_cpu_ms_per_login": (
            round((after.cpu["auth"] - before.cpu["auth"]) / count * 1000, 2)
            if "auth" in after.cpu
            else None
        ),
    }


def login_cost(target: Target, gateway: Gateway, username: str, count: int) -> dict[str, LoginCost]:
    """Median login time and auth's CPU per login, for each credential; and on the bench's own
    stack the hybrid's token exchange (what its gateway pays auth once per session and minute)."""
    out: dict[str, LoginCost] = {}
    for credential in CREDENTIALS:

        def logins() -> list[float]:
            times = []
            for _ in range(count):
                reply, seconds = gateway.timed_login(credential, username)  # noqa: B023
                assert reply.status == 200, reply.status
                times.append(seconds)
            return times

        out[credential.name] = _auth_cpu_ms(target, logins, count)
    auth = target.services.get("auth")
    if auth is not None:
        session = gateway.login(SESSION_COOKIE, username)["Cookie"].split("=", 1)[1]

        def exchanges() -> list[float]:
            times = []
            for _ in range(count):
                started = time.perf_counter()
                reply = request("POST", auth + TOKEN_EXCHANGE_PATH, exchange_request(session))
                assert reply.status == 200, reply.status
                times.append(time.perf_counter() - started)
            return times

        out["token-exchange"] = _auth_cpu_ms(target, exchanges, count)
    return out


def _header_bytes(headers: Mapping[str, str], unsafe: bool) -> int:
    """Bytes of the header lines (name, ": ", value, CRLF); X-CSRF-Token only when unsafe."""
    return sum(
        len(name) + 2 + len(value) + 2
        for name, value in headers.items()
        if unsafe or name != "X-CSRF-Token"
    )


def credential_size(target: Target, gateway: Gateway, username: str) -> dict[str, CredentialSize]:
    """Bytes of the header lines that carry each credential on a GET and a POST to /orders;
    on the bench's own stack also the hybrid's internal token, on the hops behind the gateway."""
    out: dict[str, CredentialSize] = {}
    for credential in CREDENTIALS:
        headers = gateway.login(credential, username)
        out[credential.name] = {
            "safe_request_bytes": _header_bytes(headers, False),
            "unsafe_request_bytes": _header_bytes(headers, True),
        }
        if credential is SESSION_COOKIE and "auth" in target.services:
            token = internal_token(target.services["auth"], headers["Cookie"])
            inside = {"Authorization": f"Bearer {token}"}
            size = _header_bytes(inside, False)
            out["internal"] = {"safe_request_bytes": size, "unsafe_request_bytes": size}
    return out
