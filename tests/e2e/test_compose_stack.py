"""The stack under `docker compose`, for real (needs a Docker engine; CI starts one).

`docker compose up -d --wait` on a project name and gateway port of its own (the image is built
once per session, tests/e2e/conftest.py), then: the contract tests against the containers, the
README's "Try it" commands exactly as written (the demo user is seeded by compose), a second
`up --scale orders=3` that must create the third orders replica and leave every other container
as it was (item 12 of issue 9: one image build, reused), and a re-`up` choosing the hybrid with
cached sessions (SESSION_CACHE=push GATEWAY_TOKEN_EXCHANGE=on) that recreates only the app
containers. Then the `cluster` profile (docker-compose.cluster.yml) on a project of its own: the
session store as a Redis Cluster, sessions spread over its three primaries.

Skipped, with the reason, only where no engine answers. The compose files themselves are checked
without an engine in tests/unit/test_compose.py; failures under compose are in
tests/e2e/test_compose_faults.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import ClientSession, ClientTimeout, DummyCookieJar

from services.common.settings import REPO_ROOT
from tests.e2e.composeutil import (
    CLUSTER_FILE,
    COMPOSE_FILE,
    DEMO,
    ComposeStack,
    compose_project,
    gateway_metrics,
    metric_sum,
    run,
)
from tests.e2e.test_contract import (  # noqa: F401 - collected here against compose
    test_bearer_token_is_judged_alone,
    test_csrf_is_enforced_for_cookie_requests,
    test_gateway_refuses_path_tricks_and_unknown_routes,
    test_order_lifecycle,
    test_request_ids_are_created_or_forwarded,
    test_spoofed_identity_headers_change_nothing,
)
from tests.stackutil import Api

# A cold image build is a minute or two (the session's `compose_image` fixture); each project is
# brought up in the first test that uses it.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

STORES = ("session-store", "data-store")
APPS = ("auth", "orders", "gateway")


@pytest.fixture(scope="module")
def stack(compose_image: str) -> Iterator[ComposeStack]:
    yield from compose_project(compose_image)


def try_it_commands(readme: str, gateway: str) -> str:
    """The README's "Try it" shell block, pointed at this stack's gateway, without `make up`."""
    section = readme.split("### Try it", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README's Try it section has no sh block"
    lines = [line for line in block.group(1).splitlines() if not line.startswith("make up")]
    script = "\n".join(lines).replace("localhost:8080", gateway)
    assert gateway in script, "the Try it commands no longer talk to localhost:8080"
    return script


def test_readme_try_it_works_on_compose(stack: ComposeStack, tmp_path: Path) -> None:
    """The demo user exists as soon as compose is up; JWT and session logins, as written."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (the README's commands use it)")
    script = try_it_commands((REPO_ROOT / "README.md").read_text(), f"localhost:{stack.port}")
    done = run(["bash", "-euo", "pipefail", "-c", script], timeout=60, cwd=tmp_path)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    outputs = [json.loads(line) for line in re.sub(r"\}\{", "}\n{", done.stdout).splitlines()]
    created = [o for o in outputs if "id" in o and "item" in o]
    listed = [o for o in outputs if "orders" in o]
    assert [o["item"] for o in created] == ["tea", "cake"], done.stdout
    assert len(listed) == 2 and all(listed), done.stdout
    assert {o["item"] for o in listed[-1]["orders"]} >= {"tea", "cake"}


async def test_the_page_and_server_timing_are_on_with_compose(
    api: Api, stack: ComposeStack
) -> None:
    """`docker compose up`, then http://localhost:8080: the page with its policy, and every
    verifying hop's Server-Timing entry (SERVER_TIMING is on in compose)."""
    response, _ = await api.call("GET", "/")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    response, design = await api.call("GET", "/design")
    assert response.status == 200 and design["SERVER_TIMING"] == "on", design
    username, _ = await api.signup()
    jwt = await api.jwt_login(username)
    response, _ = await api.call("GET", "/orders", headers=jwt)
    assert response.status == 200
    entries = [e.split(";")[0].strip() for e in response.headers["Server-Timing"].split(",")]
    assert entries == ["gateway", "orders"], entries


async def test_jwt_in_a_cookie_works_on_compose(api: Api, stack: ComposeStack) -> None:
    """The cookie carrier through compose's gateway: CSRF-bound, orders and auth verify the `at`
    cookie, and logout clears it and refuses it within 1 s."""
    username, _ = await api.signup()
    cookie, csrf_token = await api.cookie_login(username)
    order = {"item": "cookie-carried", "quantity": 1}
    response, _ = await api.call("POST", "/orders", headers=cookie, json=order)
    assert response.status == 403
    csrf = {**cookie, "X-CSRF-Token": csrf_token}
    response, created = await api.call("POST", "/orders", headers=csrf, json=order)
    assert response.status == 201, created
    assert (await api.logout(csrf)).cookies["at"]["max-age"] == "0"
    await api.refused_within(cookie, "the logged-out cookie still works")


def test_second_up_recreates_only_what_changed(stack: ComposeStack) -> None:
    """`up --scale orders=3` adds a replica and keeps every other container (same ids), and the
    gateway finds the new replica by DNS."""
    before = stack.containers()
    assert len(before["orders"]) == 2 and before.keys() >= {"gateway", "auth", "keys", "seed"}
    seconds = stack.up("--scale", "orders=3")
    after = stack.containers()
    assert after.keys() == before.keys()
    for service in sorted(before.keys() - {"orders"}):
        assert after[service] == before[service], f"{service} was recreated by a second up"
    assert before["orders"] < after["orders"] and len(after["orders"]) == 3
    (new,) = after["orders"] - before["orders"]
    print(f"\ncompose: up --scale orders=3 in {seconds:.1f} s, only orders changed")

    # The gateway re-resolves `orders` every UPSTREAM_DNS_REFRESH_SECONDS (5): requests reach
    # the new replica (its log shows their request ids).
    token = post_json(f"{stack.gateway_url}/auth/token", DEMO)["access_token"]
    probe = f"scale-probe-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + 30
    while True:
        for n in range(12):
            request = urllib.request.Request(
                f"{stack.gateway_url}/orders",
                headers={"Authorization": f"Bearer {token}", "X-Request-ID": f"{probe}-{n}"},
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200
        logs = run(["docker", "logs", new])
        if probe in logs.stdout + logs.stderr:
            break
        assert time.monotonic() < deadline, "the gateway never sent a request to orders #3"
        time.sleep(1)


def post_json(url: str, body: dict[str, str]) -> dict[str, str]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, str] = json.load(response)
        return answer


# The designs between the two extremes, chosen with a re-`up` (issue 11: each works in compose).


def orders_checks(stack: ComposeStack, mode: str) -> float:
    """Credentials orders accepted, over every running replica, by mode (jwt or session)."""
    return sum(
        metric_sum(stack.metrics("orders", 8082, index=n), "auth_checks_total", mode=mode)
        for n in stack.replicas("orders")
    )


async def test_hybrid_with_cached_sessions_is_an_up_away(api: Api, stack: ComposeStack) -> None:
    """SESSION_CACHE=push GATEWAY_TOKEN_EXCHANGE=on: a re-`up` recreates the app containers and
    nothing else (stores, keys and the seed keep theirs); then a session-cookie order goes
    through the gateway, which checks the CSRF token and sends orders an internal JWT fetched from
    auth's exchange endpoint, cached for the requests after it."""
    before = stack.containers()
    seconds = stack.up(SESSION_CACHE="push", GATEWAY_TOKEN_EXCHANGE="on")
    after = stack.containers()
    print(f"\ncompose: re-up with SESSION_CACHE=push GATEWAY_TOKEN_EXCHANGE=on in {seconds:.1f} s")
    assert after.keys() == before.keys()
    for service in (*STORES, "keys", "seed"):
        assert after[service] == before[service], f"{service} was recreated by a design change"
    for service in APPS:
        assert not after[service] & before[service], f"{service} kept a container of the old design"
    assert len(stack.running("orders")) >= 2

    username, _ = await api.signup()
    session = await api.session_login(username)
    jwt_before, session_before = orders_checks(stack, "jwt"), orders_checks(stack, "session")
    gateway_before = gateway_metrics(stack)

    order = {"item": "hybrid", "quantity": 2}
    response, problem = await api.call(
        "POST", "/orders", headers={"Cookie": session["Cookie"]}, json=order
    )
    assert response.status == 403, problem  # CSRF is checked at the gateway
    response, created = await api.call("POST", "/orders", headers=session, json=order)
    assert response.status == 201, created
    for _ in range(5):
        response, fetched = await api.call("GET", f"/orders/{created['id']}", headers=session)
        assert response.status == 200 and fetched == created

    gateway_after = gateway_metrics(stack)

    def gateway(name: str, **labels: str) -> float:
        return metric_sum(gateway_after, name, **labels) - metric_sum(
            gateway_before, name, **labels
        )

    assert gateway("token_exchanges_total", result="miss") == 1  # one exchange for the session
    assert gateway("token_exchanges_total", result="hit") >= 5  # then the gateway's cache
    assert gateway("session_cache_total", result="hit") >= 5  # SESSION_CACHE=push at the gateway
    # Orders never saw the cookie: every request (and the POST's call to auth) came as a JWT.
    assert orders_checks(stack, "session") == session_before
    assert orders_checks(stack, "jwt") >= jwt_before + 6

    # Logout ends the session at the gateway's cache within 1 s (the pushed invalidation).
    await api.logout(session)
    await api.refused_within(session, "the logged-out session still works after 1 s")


# The `cluster` profile: the session store as a Redis Cluster, on a project of its own.

NODES = [f"session-node-{n}" for n in range(1, 7)]


@pytest.fixture(scope="module")
def cluster(compose_image: str) -> Iterator[ComposeStack]:
    yield from compose_project(
        compose_image, files=(COMPOSE_FILE, CLUSTER_FILE), profiles=("cluster",), label="cluster"
    )


def node_keys(cluster: ComposeStack) -> dict[str, tuple[str, int]]:
    """Each node's role (master or slave) and number of keys."""
    answer = {}
    for node in NODES:
        role = cluster.exec(node, "redis-cli", "role").split()[0]
        answer[node] = (role, int(cluster.exec(node, "redis-cli", "dbsize")))
    return answer


async def test_cluster_profile_spreads_sessions_and_survives_a_primary_crash(
    cluster: ComposeStack,
) -> None:
    """Sessions through the gateway land on all three primaries. Then one primary crashes and
    Docker restarts it at once, empty: its replica takes its slots over with the sessions (the
    restarted node waits until then, and rejoins as a replica). Meanwhile session requests on its
    slots get 503, never 401 or 500, and JWT requests never notice (docs/API.md)."""
    services = cluster.containers()
    assert "session-store" not in services, "the single session store runs beside the cluster"
    assert set(NODES) | {"cluster-init"} <= services.keys()
    inspected = run(["docker", "inspect", *services["cluster-init"]])
    assert json.loads(inspected.stdout)[0]["State"]["ExitCode"] == 0
    before = node_keys(cluster)
    primaries = sorted(node for node, (role, _) in before.items() if role == "master")
    assert len(primaries) == 3, before

    async with ClientSession(timeout=ClientTimeout(total=10), cookie_jar=DummyCookieJar()) as http:
        api = Api(http, cluster.gateway_url)
        username, _ = await api.signup()
        sessions = [await api.session_login(username) for _ in range(24)]
        for session in sessions:
            response, listed = await api.call("GET", "/orders", headers=session)
            assert response.status == 200, listed
        response, created = await api.call(
            "POST", "/orders", headers=sessions[0], json={"item": "clustered", "quantity": 1}
        )
        assert response.status == 201, created
        bearer = await api.jwt_login(username)
        response, listed = await api.call("GET", "/orders", headers=bearer)
        assert response.status == 200 and [o["id"] for o in listed["orders"]] == [created["id"]]

        after = node_keys(cluster)
        gained = {node: after[node][1] - before[node][1] for node in primaries}
        print(f"\ncompose (cluster): keys gained per primary after 24 session logins: {gained}")
        assert all(count > 0 for count in gained.values()), gained

        victim = primaries[0]
        cluster.exec(victim, "redis-cli", "debug", "segfault", check=False)
        started = time.monotonic()
        seen: set[int] = set()
        while True:
            statuses = [
                (await api.call("GET", "/orders", headers=session))[0].status
                for session in sessions
            ]
            seen.update(statuses)
            assert set(statuses) <= {200, 503}, statuses
            assert (await api.call("GET", "/orders", headers=bearer))[0].status == 200
            if statuses == [200] * len(sessions) and 503 in seen:
                break
            assert time.monotonic() - started < 30, f"sessions on {victim}'s slots never recovered"
            await asyncio.sleep(0.1)
        recovered = time.monotonic() - started
    print(
        f"compose (cluster): primary {victim} crashed; all {len(sessions)} sessions answered "
        f"again after {recovered:.1f} s"
    )
    # The restarted node (it waits 10 s before starting) rejoins as the new primary's replica.
    deadline = time.monotonic() + 60
    while "slave" not in cluster.exec(victim, "redis-cli", "role", check=False):
        assert time.monotonic() < deadline, f"{victim} did not rejoin as a replica"
        await asyncio.sleep(0.5)
    assert [role for role, _ in node_keys(cluster).values()].count("master") == 3
