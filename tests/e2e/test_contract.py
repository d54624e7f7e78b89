"""The contract end to end through the gateway, in both credential modes."""

from __future__ import annotations

import re
import uuid

import pytest

from devstack.stack import Stack
from tests.e2e.conftest import Api

MODES = ["jwt", "session"]


@pytest.mark.parametrize("mode", MODES)
async def test_order_lifecycle(api: Api, mode: str) -> None:
    username, user_id = await api.signup()
    auth = await api.login(mode, username)

    me, body = await api.call("GET", "/auth/me", headers=auth)
    assert me.status == 200 and body == {"sub": user_id, "username": username, "auth": mode}

    created, first = await api.call(
        "POST", "/orders", headers=auth, json={"item": "tea", "quantity": 3}
    )
    assert created.status == 201, first
    assert created.headers["Location"] == f"/orders/{first['id']}"
    assert first["owner"] == user_id and first["item"] == "tea" and first["quantity"] == 3
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first["created_at"])

    key = {"Idempotency-Key": uuid.uuid4().hex}
    one, a = await api.call(
        "POST", "/orders", headers={**auth, **key}, json={"item": "cake", "quantity": 1}
    )
    two, b = await api.call(
        "POST", "/orders", headers={**auth, **key}, json={"item": "cake", "quantity": 1}
    )
    assert one.status == two.status == 201 and a == b
    clash, problem = await api.call(
        "POST", "/orders", headers={**auth, **key}, json={"item": "cake", "quantity": 2}
    )
    assert clash.status == 409 and problem["status"] == 409

    listed, orders = await api.call("GET", "/orders", headers=auth)
    assert listed.status == 200
    assert [o["id"] for o in orders["orders"]] == [a["id"], first["id"]]  # newest first, one cake
    limited, orders = await api.call("GET", "/orders?limit=1", headers=auth)
    assert limited.status == 200
    assert [o["id"] for o in orders["orders"]] == [a["id"]]
    for bad in ("0", "101", "x", "1.5", "-1", ""):
        response, problem = await api.call("GET", f"/orders?limit={bad}", headers=auth)
        assert response.status == 422, bad
    got, order = await api.call("GET", f"/orders/{first['id']}", headers=auth)
    assert got.status == 200 and order == first

    # Another user sees none of it.
    other_name, _ = await api.signup()
    other = await api.login(mode, other_name)
    response, _ = await api.call("GET", f"/orders/{first['id']}", headers=other)
    assert response.status == 404
    response, orders = await api.call("GET", "/orders", headers=other)
    assert orders == {"orders": []}
    response, _ = await api.call("GET", "/orders/" + "0" * 32, headers=auth)
    assert response.status == 404

    # Logout, then the same credential is refused everywhere.
    out, _ = await api.call("POST", "/auth/logout", headers=auth)
    assert out.status == 204
    for method, path in (
        ("GET", "/orders"),
        ("GET", f"/orders/{first['id']}"),
        ("GET", "/auth/me"),
    ):
        response, problem = await api.call(method, path, headers=auth)
        assert response.status == 401, (method, path)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_csrf_is_enforced_for_cookie_requests(api: Api) -> None:
    username, _ = await api.signup()
    auth = await api.session_login(username)
    cookie = {"Cookie": auth["Cookie"]}
    for headers in (cookie, {**cookie, "X-CSRF-Token": "wrong"}):
        response, problem = await api.call(
            "POST", "/orders", headers=headers, json={"item": "x", "quantity": 1}
        )
        assert response.status == 403 and problem["status"] == 403
    response, orders = await api.call("GET", "/orders", headers=cookie)
    assert response.status == 200 and orders == {"orders": []}  # nothing was created
    response, _ = await api.call("POST", "/auth/logout", headers=cookie)
    assert response.status == 403
    response, _ = await api.call("GET", "/auth/me", headers=cookie)
    assert response.status == 200  # the session survived the refused logout


async def test_bearer_token_is_judged_alone(api: Api) -> None:
    username, _ = await api.signup()
    session = await api.session_login(username)
    response, _ = await api.call(
        "GET", "/orders", headers={**session, "Authorization": "Bearer forged"}
    )
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_spoofed_identity_headers_change_nothing(api: Api) -> None:
    victim_name, victim_id = await api.signup()
    victim = await api.jwt_login(victim_name)
    _, order = await api.call(
        "POST", "/orders", headers=victim, json={"item": "secret", "quantity": 1}
    )
    attacker_name, attacker_id = await api.signup()
    attacker = await api.jwt_login(attacker_name)
    spoof = {"X-User-Id": victim_id, "X-Auth-User": victim_id, "X-Forwarded-User": victim_id}
    response, _ = await api.call("GET", f"/orders/{order['id']}", headers={**attacker, **spoof})
    assert response.status == 404
    response, created = await api.call(
        "POST", "/orders", headers={**attacker, **spoof}, json={"item": "y", "quantity": 1}
    )
    assert created["owner"] == attacker_id


async def test_request_ids_are_created_or_forwarded(api: Api, stack: Stack) -> None:
    response, _ = await api.call(
        "GET", "/auth/.well-known/jwks.json", headers={"X-Request-ID": "trace-me-123"}
    )
    assert response.status == 200 and response.headers["X-Request-ID"] == "trace-me-123"
    response, _ = await api.call("GET", "/orders")
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    response, _ = await api.call("GET", "/orders", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["X-Request-ID"] != "bad id\twith spaces"


async def test_gateway_refuses_path_tricks_and_unknown_routes(api: Api) -> None:
    for path in ("/auth/%2e%2e/orders", "/orders/%2F..%2Fauth", "/orders//x", "/auth/..;/orders"):
        response, problem = await api.call("GET", path)
        assert response.status == 400, path
        assert problem["status"] == 400
    response, problem = await api.call("GET", "/admin")
    assert response.status == 404 and problem["status"] == 404
    response, problem = await api.call(
        "POST", "/auth/users", data=b"x" * 70_000, headers={"Content-Type": "application/json"}
    )
    assert response.status == 413 and problem["status"] == 413


async def test_every_hop_verifies_and_metrics_show_it(api: Api, stack: Stack) -> None:
    async def checks(url: str) -> float:
        return await api.metric(url, "auth_checks_total", result="ok")

    urls = [stack.gateway_url, stack.auth_url, *stack.orders_urls]
    username, _ = await api.signup()
    auth = await api.jwt_login(username)
    before = [await checks(u) for u in urls]
    response, _ = await api.call(
        "POST", "/orders", headers=auth, json={"item": "fan-out", "quantity": 1}
    )
    assert response.status == 201
    after = [await checks(u) for u in urls]
    delta = [b - a for a, b in zip(before, after, strict=True)]
    assert delta[0] == 1  # the gateway's edge check
    assert delta[1] == 1  # auth, called by orders with the caller's credential
    assert sum(delta[2:]) == 1  # exactly one orders replica served it


async def test_one_request_id_followed_through_every_service_log(api: Api, stack: Stack) -> None:
    import asyncio
    import json
    import time
    from pathlib import Path

    username, _ = await api.signup()
    auth = await api.jwt_login(username)
    rid = "trace-" + uuid.uuid4().hex
    response, _ = await api.call(
        "POST",
        "/orders",
        headers={**auth, "X-Request-ID": rid},
        json={"item": "traced", "quantity": 1},
    )
    assert response.status == 201 and response.headers["X-Request-ID"] == rid
    log = Path(stack.log.name)
    deadline = time.monotonic() + 5
    while True:
        stack.log.flush()
        services = set()
        for line in log.read_text().splitlines():
            _, _, payload = line.partition("] ")
            if rid in payload:
                entry = json.loads(payload)
                assert entry["request_id"] == rid
                services.add(entry["service"])
        if {"gateway", "orders", "auth"} <= services:
            break
        assert time.monotonic() < deadline, f"request id seen only in {services}"
        await asyncio.sleep(0.05)
