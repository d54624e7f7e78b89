"""Authorization across users and ports; hostile input: bodies, types, methods, paths, framing.

Long because it is one threat area's whole table of cases, run against one stack.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest

from devstack.stack import Stack
from tests.stackutil import Api


async def test_other_users_orders_by_id_filter_and_spoofed_identity(api: Api, stack: Stack) -> None:
    victim_name, victim_id = await api.signup()
    victim = await api.jwt_login(victim_name)
    _, order = await api.call(
        "POST", "/orders", headers=victim, json={"item": "private", "quantity": 1}
    )
    attacker_name, attacker_id = await api.signup()
    for mode in ("jwt", "session"):
        attacker = await api.login(mode, attacker_name)
        response, _ = await api.call("GET", f"/orders/{order['id']}", headers=attacker)
        assert response.status == 404
        for query in (
            f"owner={victim_id}",
            f"limit=5&owner={victim_id}",
            f"user={victim_id}",
            "limit=5&limit=6",
        ):
            response, problem = await api.call("GET", f"/orders?{query}", headers=attacker)
            assert response.status == 422 and problem["status"] == 422, query
        spoof = {
            "X-User-Id": victim_id,
            "X-Auth-Request-User": victim_id,
            "X-Forwarded-User": victim_id,
            "X-Remote-User": victim_id,
            "X-Principal": victim_id,
            "X-Sub": victim_id,
        }
        response, orders = await api.call("GET", "/orders", headers={**attacker, **spoof})
        assert response.status == 200 and all(o["owner"] == attacker_id for o in orders["orders"])
        # Straight to an orders replica, bypassing the gateway: same answer.
        async with api.http.get(
            f"{stack.orders_urls[1]}/orders/{order['id']}", headers={**attacker, **spoof}
        ) as r:
            assert r.status == 404


@pytest.mark.parametrize("service", ["auth", "orders-1", "orders-2"])
async def test_internal_ports_need_credentials_too(api: Api, stack: Stack, service: str) -> None:
    base = stack.url(service)
    path = "/me" if service == "auth" else "/orders"
    spoof = {"X-User-Id": "admin", "X-Forwarded-For": "127.0.0.1"}
    async with api.http.get(base + path, headers=spoof) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "path, body, content_type, status",
    [
        ("/auth/users", b"{", "application/json", 422),
        ("/auth/users", b'{"username": "a"', "application/json", 422),
        ("/auth/users", b"\xff\xfe\x00", "application/json", 422),
        ("/auth/users", b'"just a string"', "application/json", 422),
        ("/auth/users", b"null", "application/json", 422),
        ("/auth/users", b"[" * 100_00 + b"]" * 100_00, "application/json", 422),
        ("/auth/users", b'{"username": "abc", "password": "12345678"}', "text/plain", 415),
        (
            "/auth/users",
            b"username=abc&password=12345678",
            "application/x-www-form-urlencoded",
            415,
        ),
        (
            "/auth/users",
            b'{"username": "abc", "password": "12345678"}',
            "application/json-patch+json",
            415,
        ),
        ("/auth/token", b"{}", "application/json", 422),
        ("/auth/refresh", b'{"refresh_token": null}', "application/json", 422),
        ("/auth/users", b"x" * 70_000, "application/json", 413),
        (
            "/auth/token",
            b'{"username": "a", "password": "' + b"p" * 70_000 + b'"}',
            "application/json",
            413,
        ),
    ],
)
async def test_malformed_and_huge_bodies(
    api: Api,
    path: str,
    body: bytes,
    content_type: str,
    status: int,
    store_sizes: Callable[[], tuple[int, int]],
) -> None:
    before = store_sizes()
    response, problem = await api.call(
        "POST", path, data=body, headers={"Content-Type": content_type}
    )
    assert response.status == status, problem
    assert response.content_type == "application/problem+json" and problem["status"] == status
    assert store_sizes()[1] == before[1]  # the data store is untouched


async def test_orders_bodies_and_queries(
    api: Api, store_sizes: Callable[[], tuple[int, int]]
) -> None:
    username, _ = await api.signup()
    auth = await api.jwt_login(username)
    before = store_sizes()
    bad_bodies: list[object] = [
        {},
        {"item": "", "quantity": 1},
        {"item": "x" * 201, "quantity": 1},
        {"item": "x", "quantity": 0},
        {"item": "x", "quantity": 1001},
        {"item": "x", "quantity": "1"},
        {"item": "x", "quantity": 1.0},
        {"item": "x", "quantity": True},
        {"item": ["x"], "quantity": 1},
        {"item": "x\u0000", "quantity": 1},
        {"item": "x", "quantity": 1, "owner": "someone"},
        {"item": "x", "quantity": 10**30},
        [],
        "x",
        5,
    ]
    for body in bad_bodies:
        response, _problem = await api.call("POST", "/orders", headers=auth, json=body)
        assert response.status == 422, body
    for key in ("", " ", "é", "k" * 256, "a\tb"):
        response, _ = await api.call(
            "POST",
            "/orders",
            headers={**auth, "Idempotency-Key": key},
            json={"item": "x", "quantity": 1},
        )
        assert response.status == 422, repr(key)
    for query in (
        "limit=abc",
        "limit=-1",
        "limit=0",
        "limit=101",
        "limit=1e2",
        "limit=%00",
        "limit=%EF%BC%91",
        "limit=" + "9" * 5000,
        "foo=bar",
    ):
        response, _ = await api.call("GET", f"/orders?{query}", headers=auth)
        assert response.status == 422, query
    for order_id in ("x", "0" * 31, "G" * 32, "0" * 33):
        response, _ = await api.call("GET", f"/orders/{order_id}", headers=auth)
        assert response.status == 404
    assert store_sizes()[1] == before[1]


@pytest.mark.parametrize(
    "username",
    [
        "ad\u0000min",
        "admin\u200b",
        "аdmin",
        "ＡＤＭＩＮ",
        "admin\n",
        " admin",
        "admin ",
        "ad min",
        "𝓪𝓭𝓶𝓲𝓷",
        "ab",
        "a" * 65,
        "admin/..",
        "admin%00",
    ],
)
async def test_hostile_usernames_are_refused(
    api: Api, username: str, store_sizes: Callable[[], tuple[int, int]]
) -> None:
    before = store_sizes()
    response, problem = await api.call(
        "POST", "/auth/users", json={"username": username, "password": "long password"}
    )
    assert response.status == 422 and problem["status"] == 422
    assert store_sizes()[1] == before[1]
    response, _ = await api.call(
        "POST", "/auth/token", json={"username": username, "password": "long password"}
    )
    # The input rules refuse control characters in any text field (422); the rest is a login
    # that simply fails.
    control = any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in username)
    assert response.status == (422 if control else 401)


async def test_huge_passwords(api: Api) -> None:
    username, _ = await api.signup()
    response, _ = await api.call(
        "POST", "/auth/users", json={"username": username + "x", "password": "p" * 257}
    )
    assert response.status == 422
    response, _ = await api.call(
        "POST", "/auth/token", json={"username": username, "password": "p" * 60_000}
    )
    assert response.status == 401


@pytest.mark.parametrize(
    "method, path",
    [
        ("DELETE", "/orders"),
        ("PUT", "/orders"),
        ("PATCH", "/orders/" + "0" * 32),
        ("GET", "/auth/users"),
        ("GET", "/auth/token"),
        ("DELETE", "/auth/session"),
        ("PUT", "/auth/.well-known/jwks.json"),
    ],
)
async def test_wrong_methods(api: Api, method: str, path: str) -> None:
    username, _ = await api.signup()
    auth = await api.jwt_login(username)
    response, problem = await api.call(method, path, headers=auth)
    assert response.status == 405 and problem["status"] == 405
    assert response.headers.get("Allow")


@pytest.mark.parametrize(
    "path, status",
    [
        ("/auth/../orders", 400),
        ("/auth/%2e%2e/orders", 400),
        ("/auth/%2E%2E%2Forders", 400),
        ("/orders/..%2f..%2fauth/me", 400),
        ("/auth/.%2e/orders", 400),
        ("/orders/%252e%252e", 400),
        ("/auth//me", 400),
        ("/auth/me/..", 400),
        ("/auth/me%00", 400),
        ("/%61uth/me", 400),
        ("/auth\\..\\orders", 404),  # no route starts like that
        ("/orders;/../auth/me", 404),
    ],
)
async def test_path_tricks_through_the_gateway(api: Api, path: str, status: int) -> None:
    response, problem = await api.call("GET", path)
    assert response.status == status, path
    assert problem["status"] == status


def raw_exchange(port: int, payload: bytes, timeout: float = 3.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


SMUGGLE_TAIL = b"GET /auth/.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    "request_head",
    [
        # CL.TE and TE.CL shapes
        b"POST /auth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /auth/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 3\r\n\r\n0\r\n\r\n",
        # obfuscated Transfer-Encoding
        b"POST /auth/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST /auth/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        # duplicate, conflicting Content-Length
        b"POST /auth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
        # bare CR inside a header
        b"GET /auth/.well-known/jwks.json HTTP/1.1\r\nHost: x\rX-Evil: 1\r\n\r\n",
    ],
)
async def test_smuggling_shapes_are_refused_and_never_reach_a_second_request(
    stack: Stack, request_head: bytes
) -> None:
    answer = raw_exchange(stack.ports.gateway, request_head + SMUGGLE_TAIL)
    statuses = [
        line for line in answer.split(b"\r\n") if line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 "))
    ]
    assert statuses, answer
    assert statuses[0].split()[1] == b"400", statuses
    assert len(statuses) == 1, f"a second request was answered: {statuses}"
    assert b'"keys"' not in answer


async def test_well_formed_raw_requests_still_work(stack: Stack) -> None:
    answer = raw_exchange(
        stack.ports.gateway, SMUGGLE_TAIL.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    )
    assert answer.startswith(b"HTTP/1.1 200") and b'"keys"' in answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["keys"]
