"""The contract's input rules, at the gateway and at each service directly.

Header bytes outside visible ASCII, compressed bodies, and bodies that are not strict UTF-8 JSON
are refused with a 4xx problem (never a 500) and change nothing. Raw bytes are sent with
http.client, since aiohttp's client would drop or re-encode them.

Long because every rule is tried at the gateway and at each service: one suite, kept whole.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import pytest

from devstack.stack import Stack
from tests.stackutil import Api

PROBLEM = "application/problem+json"
Header = tuple[str, str | bytes]
Target = tuple[str, str, bytes | None]  # method, URL, body


def send(
    url: str, method: str, *, body: bytes | None = None, headers: Sequence[Header] = ()
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.putrequest(method, parts.path + (f"?{parts.query}" if parts.query else ""))
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


async def call(
    url: str, method: str, *, body: bytes | None = None, headers: Sequence[Header] = ()
) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(send, url, method, body=body, headers=headers)


def assert_problem(answer: tuple[int, dict[str, str], bytes], status: int, where: str) -> None:
    got, headers, payload = answer
    assert got == status, (where, got, payload[:300])
    assert headers["content-type"] == PROBLEM, where
    assert json.loads(payload)["status"] == status


async def refused_at_each(
    targets: Sequence[Target], headers: Sequence[Header], challenge: str
) -> None:
    """Each (method, url, body) answers a 401 problem with this WWW-Authenticate challenge."""
    for method, url, body in targets:
        answer = await call(url, method, body=body, headers=headers)
        assert_problem(answer, 401, url)
        assert answer[1]["www-authenticate"] == challenge, url


def orders_urls(stack: Stack, path: str = "/orders") -> list[str]:
    """The gateway and every orders replica directly."""
    return [stack.gateway_url + path] + [base + path for base in stack.orders_urls]


def auth_urls(stack: Stack, path: str) -> list[str]:
    return [f"{stack.gateway_url}/auth{path}", stack.auth_url + path]


def reads(stack: Stack) -> list[Target]:
    """GET /orders at the gateway and each orders replica, GET /me at the gateway and auth."""
    return [("GET", url, None) for url in orders_urls(stack) + auth_urls(stack, "/me")]


async def orders_of(api: Api, auth: dict[str, str]) -> list[dict[str, Any]]:
    response, body = await api.call("GET", "/orders?limit=100", headers=auth)
    assert response.status == 200
    orders: list[dict[str, Any]] = body["orders"]
    return orders


async def order_refused_everywhere(
    stack: Stack, auth: dict[str, str], body: bytes, header: Header | None, status: int
) -> None:
    """POST this body as JSON, with the bearer (and one more header, if given), to the gateway
    and each orders replica: each answers a problem with this status."""
    headers: list[Header] = [
        ("Authorization", auth["Authorization"]),
        ("Content-Type", "application/json"),
        *([header] if header else []),
    ]
    for url in orders_urls(stack):
        assert_problem(await call(url, "POST", body=body, headers=headers), status, url)


async def tea_ordered(api: Api, headers: dict[str, str]) -> None:
    """An order of one tea through the gateway, with these headers, is created."""
    response, _ = await api.call(
        "POST", "/orders", headers=headers, json={"item": "tea", "quantity": 1}
    )
    assert response.status == 201


def bearer(auth: dict[str, str]) -> bytes:
    return auth["Authorization"].encode()


# -- header bytes ------------------------------------------------------------------------------


async def test_a_non_ascii_byte_in_a_bearer_token_is_401_everywhere(api: Api, stack: Stack) -> None:
    username, _ = await api.signup()
    auth = await api.jwt_login(username)
    for value in (bearer(auth) + b"\xff", b"Bearer \xff", bearer(auth)[:20] + b"\x80" + b"x" * 40):
        writes = auth_urls(stack, "/logout") + orders_urls(stack)
        targets = reads(stack) + [("POST", url, None) for url in writes]
        await refused_at_each(targets, [("Authorization", value)], 'Bearer error="invalid_token"')
    # None of that was a logout: the token still works.
    response, _ = await api.call("GET", "/auth/me", headers=auth)
    assert response.status == 200


async def test_a_non_ascii_byte_in_a_cookie_is_401_everywhere(api: Api, stack: Stack) -> None:
    username, _ = await api.signup()
    session = await api.session_login(username)
    login = json.dumps({"username": username, "password": "correct horse"}).encode()
    for cookie in (b"sid=\xff", session["Cookie"].encode() + b"\xff", b"theme=\xe9t\xe9"):
        targets = reads(stack) + [("POST", url, login) for url in auth_urls(stack, "/session")]
        headers: list[Header] = [("Cookie", cookie), ("Content-Type", "application/json")]
        await refused_at_each(targets, headers, "Bearer")
    response, _ = await api.call("GET", "/auth/me", headers=session)
    assert response.status == 200


async def test_a_non_ascii_csrf_token_is_403_and_changes_nothing(api: Api, stack: Stack) -> None:
    username, _ = await api.signup()
    session = await api.session_login(username)
    order = json.dumps({"item": "tea", "quantity": 1}).encode()
    headers: list[Header] = [
        ("Cookie", session["Cookie"]),
        ("X-CSRF-Token", session["X-CSRF-Token"].encode() + b"\xff"),
        ("Content-Type", "application/json"),
    ]
    for url in orders_urls(stack):
        assert_problem(await call(url, "POST", body=order, headers=headers), 403, url)
    for url in auth_urls(stack, "/logout"):
        assert_problem(await call(url, "POST", headers=headers), 403, url)
    assert await orders_of(api, session) == []  # nothing ordered, and still logged in


async def test_a_non_ascii_idempotency_key_is_422_never_a_shorter_key(
    api: Api, stack: Stack
) -> None:
    username, _ = await api.signup()
    auth = await api.jwt_login(username)
    order = json.dumps({"item": "tea", "quantity": 1}).encode()
    key = "k" + uuid.uuid4().hex
    for bad in (key.encode() + b"\x80", b"\xff" + key.encode(), (key + "\u00e9").encode()):
        await order_refused_everywhere(stack, auth, order, ("Idempotency-Key", bad), 422)
    assert await orders_of(api, auth) == []
    # The key without the stray byte is its own key: its first use creates an order (the
    # gateway used to forward "k\x80" as "k", so two different keys collided).
    await tea_ordered(api, {**auth, "Idempotency-Key": key})


async def test_compressed_request_bodies_are_415_and_change_nothing(
    api: Api, stack: Stack, store_sizes: Callable[[], tuple[int, int]]
) -> None:
    username, _ = await api.signup()
    auth = await api.jwt_login(username)
    before = store_sizes()[1]
    order = gzip.compress(json.dumps({"item": "tea", "quantity": 1}).encode())
    newcomer = "z" + uuid.uuid4().hex[:12]
    signup = gzip.compress(json.dumps({"username": newcomer, "password": "long enough"}).encode())
    for encoding in ("gzip", "GZip", "deflate", "br", "identity, gzip"):
        await order_refused_everywhere(stack, auth, order, ("Content-Encoding", encoding), 415)
        for url in auth_urls(stack, "/users"):
            headers: list[Header] = [
                ("Content-Type", "application/json"),
                ("Content-Encoding", encoding),
            ]
            assert_problem(await call(url, "POST", body=signup, headers=headers), 415, url)
    assert store_sizes()[1] == before
    assert await orders_of(api, auth) == []
    # An explicit identity coding is no coding at all.
    await tea_ordered(api, {**auth, "Content-Encoding": "identity"})


# -- bodies ------------------------------------------------------------------------------------

# Each defect as a function of a valid body (whole-body defects) or of a JSON string token
# placed where a text field goes (string defects).
WHOLE_BODY: dict[str, Callable[[str], bytes]] = {
    "UTF-8 BOM": lambda text: b"\xef\xbb\xbf" + text.encode(),
    "UTF-16": lambda text: text.encode("utf-16"),
    "UTF-16LE": lambda text: text.encode("utf-16-le"),
    "UTF-32": lambda text: text.encode("utf-32"),
    "duplicate member": lambda text: text[:-1].encode() + b', "quantity": 2, "quantity": 3}',
}
STRING_TOKENS: dict[str, bytes] = {
    "escaped lone surrogate": b'"tea\\ud800pot"',
    "escaped lone low surrogate": b'"\\udc00teapot"',
    "escaped pair reversed": b'"\\ude00\\ud83dteapot"',
    "CESU-8 surrogate bytes": b'"tea\xed\xa0\x80pot"',
    "invalid UTF-8": b'"tea\xffpot"',
    "overlong UTF-8": b'"tea\xc0\xafpot"',
}
DEFECTS = list(WHOLE_BODY) + list(STRING_TOKENS) + ["too deep"]


def defective(defect: str, fields: Mapping[str, object], text_field: str) -> bytes:
    valid = json.dumps(fields)
    if defect in WHOLE_BODY:
        return WHOLE_BODY[defect](valid)
    if defect == "too deep":
        nested = b"[" * 30_000 + b"]" * 30_000
        return valid[:-1].encode() + b', "extra": ' + nested + b"}"
    placeholder = json.dumps(fields[text_field]).encode()
    return valid.encode().replace(placeholder, STRING_TOKENS[defect], 1)


@pytest.mark.parametrize("defect", DEFECTS)
async def test_order_bodies_must_be_strict_utf8_json(
    api: Api, stack: Stack, defect: str, store_sizes: Callable[[], tuple[int, int]]
) -> None:
    username, _ = await api.signup()
    auth = await api.jwt_login(username)
    before = store_sizes()[1]
    body = defective(defect, {"item": "teapot", "quantity": 1}, "item")
    await order_refused_everywhere(stack, auth, body, None, 422)
    assert await orders_of(api, auth) == []
    assert store_sizes()[1] == before


@pytest.mark.parametrize("defect", DEFECTS)
async def test_auth_bodies_must_be_strict_utf8_json(
    api: Api, stack: Stack, defect: str, store_sizes: Callable[[], tuple[int, int]]
) -> None:
    username = "n" + uuid.uuid4().hex[:12]
    credentials = {"username": username, "password": "teapot-password"}
    before = store_sizes()[1]
    for path, fields, text_field in (
        ("/users", credentials, "password"),
        ("/token", credentials, "password"),
        ("/session", credentials, "password"),
        ("/refresh", {"refresh_token": "teapot-token"}, "refresh_token"),
    ):
        body = defective(defect, fields, text_field)
        for url in auth_urls(stack, path):
            headers: list[Header] = [("Content-Type", "application/json")]
            assert_problem(await call(url, "POST", body=body, headers=headers), 422, url)
    assert store_sizes()[1] == before  # no account was created
    # The name is still free, and a failed-parse login counted no failure against it.
    response, _ = await api.call("POST", "/auth/users", json=credentials)
    assert response.status == 201
    await api.jwt_login(username, "teapot-password")


@pytest.mark.parametrize(
    "item",
    [
        "a\x00b",
        "a\x07b",
        "line\nbreak",
        "tab\there",
        "\x7f",
        "next\x85line",
        "  ",
        "\u2003",
        "\u200b",
    ],
)
async def test_order_items_hold_no_control_characters_and_are_not_blank(
    api: Api, stack: Stack, item: str
) -> None:
    username, _ = await api.signup()
    auth = await api.jwt_login(username)
    body = json.dumps({"item": item, "quantity": 1}).encode()  # escaped: valid JSON text
    await order_refused_everywhere(stack, auth, body, None, 422)
    assert await orders_of(api, auth) == []


async def test_valid_unicode_still_round_trips(api: Api) -> None:
    username, _ = await api.signup()
    auth = await api.jwt_login(username)
    item = "caf\u00e9 \U0001f375"
    for body in (
        json.dumps({"item": item, "quantity": 1}).encode(),  # \ud83c\udf75: an escaped pair
        json.dumps({"item": item, "quantity": 1}, ensure_ascii=False).encode(),  # raw UTF-8
    ):
        response, order = await api.call(
            "POST", "/orders", headers={**auth, "Content-Type": "application/json"}, data=body
        )
        assert response.status == 201, order
        assert order["item"] == item
    assert [o["item"] for o in await orders_of(api, auth)] == [item, item]
