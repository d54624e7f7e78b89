"""The session store's outage: what each design answers while the store is stalled (DEBUG
SLEEP), then stopped; then the store is started again (empty) and the services waited for."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypedDict

from devstack.stack import Stack
from loadtests.measure import servers
from loadtests.measure.client import Gateway
from loadtests.modes import Credential, Mode

STALL_S = 2.0
RECOVERY_S = 15.0  # how long the services may take to work again after the store is back


class Probe(TypedDict):
    """Answers to a few identical requests."""

    statuses: dict[str, int]  # HTTP status ("0": no answer in time) -> count
    max_ms: float


class Outage(TypedDict):
    """Probes by design (and "<credential> login") while the store is stalled, then down."""

    stalled: dict[str, Probe]
    down: dict[str, Probe]


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
    """Every design's probe at once, so that all of them fall inside the stall."""
    with ThreadPoolExecutor(max_workers=max(len(credentials), 1)) as pool:
        futures = {m: pool.submit(probe, gateway, h, tries) for m, h in credentials.items()}
        return {m: f.result() for m, f in futures.items()}


def store_outage(stack: Stack, gateway: Gateway, modes: Sequence[Mode], username: str) -> Outage:
    """Requests with each design's credential while the session store is stalled, then
    stopped; then the store is started again and the services waited for.

    The services run the settings `modes` share. Each credential is used a few times first, so
    every verifier on its way has seen it (a cache holds it, the hybrid's gateway holds its
    internal token): the stall then shows what a warm cache answers.
    """
    credentials = {m.name: gateway.login(m.credential, username) for m in modes}
    for headers in credentials.values():
        for _ in range(4):
            gateway.status(headers)
    store = servers.StoreAddress("127.0.0.1", stack.ports.session_store)
    sleeper = threading.Thread(target=servers.sleep, args=(store, STALL_S), daemon=True)
    sleeper.start()
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline and servers.answers(store, timeout=0.05):
        time.sleep(0.01)  # poll interval: until the store stops answering (the stall began)
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
        until_login_works(gateway, credential, username, RECOVERY_S)
    return {"stalled": stalled, "down": down}


def until_login_works(
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
        time.sleep(0.05)  # poll interval
