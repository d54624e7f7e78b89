"""Property-based fuzzing of every endpoint through the gateway (hypothesis).

Whatever arrives, the answer is never a 5xx, never a traceback, always problem details on
errors, and a rejected request leaves the data store exactly as it was.
"""

from __future__ import annotations

import http.client
import json
import os
import string
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.client import http_json
from devstack.stack import Stack
from tests.security.conftest import dbsize

ENDPOINTS = [
    ("POST", "/auth/users"),
    ("POST", "/auth/token"),
    ("POST", "/auth/refresh"),
    ("POST", "/auth/session"),
    ("POST", "/auth/logout"),
    ("GET", "/auth/me"),
    ("GET", "/auth/.well-known/jwks.json"),
    ("POST", "/orders"),
    ("GET", "/orders"),
    ("GET", "/orders/{id}"),
]
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

header_text = st.text(
    alphabet=string.printable.replace("\r", "")
    .replace("\n", "")
    .replace("\x0b", "")
    .replace("\x0c", ""),
    max_size=80,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False)
    | st.text(max_size=300),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=20,
)
credential_fields = st.fixed_dictionaries(
    {},
    optional={
        "username": st.one_of(st.text(max_size=80), st.integers(), st.none()),
        "password": st.one_of(st.text(max_size=300), st.integers(), st.none()),
        "refresh_token": st.one_of(st.text(max_size=300), st.integers()),
        "item": st.one_of(st.text(max_size=250), st.integers()),
        "quantity": st.one_of(
            st.integers(min_value=-5, max_value=2000), st.text(max_size=5), st.floats()
        ),
    },
)
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    credential_fields.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.just(b""),
)


@pytest.fixture(scope="module")
def identity(stack: Stack) -> dict[str, Any]:
    """One real account with a bearer token and a session, so fuzzed requests get past auth."""
    username = "fuzz" + uuid.uuid4().hex[:10]
    password = "fuzz-password"
    http_json(
        "POST", f"{stack.gateway_url}/auth/users", {"username": username, "password": password}
    )
    _, token = http_json(
        "POST", f"{stack.gateway_url}/auth/token", {"username": username, "password": password}
    )
    import urllib.request

    request = urllib.request.Request(
        f"{stack.gateway_url}/auth/session",
        method="POST",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        cookie = response.headers["Set-Cookie"].split(";")[0]
        csrf = json.loads(response.read())["csrf_token"]
    assert isinstance(token, dict)
    return {"bearer": f"Bearer {token['access_token']}", "cookie": cookie, "csrf": csrf}


def send(
    port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def check(status: int, content_type: str, payload: bytes, method: str = "GET") -> None:
    assert status < 500, (status, payload[:300])
    assert b"Traceback" not in payload and b'File "' not in payload
    if status >= 400 and method != "HEAD":  # HEAD answers carry no body
        assert content_type.startswith("application/problem+json"), (
            status,
            content_type,
            payload[:200],
        )
        assert json.loads(payload)["status"] == status


@FUZZ
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    body=bodies,
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/json; charset=latin-1", ""]
    ),
    auth=st.sampled_from(["none", "bearer", "cookie", "cookie-csrf", "garbage"]),
    garbage=header_text,
    idempotency=st.one_of(st.none(), header_text),
    order_id=st.text(max_size=40),
)
def test_fuzz_every_endpoint(
    stack: Stack,
    identity: dict[str, Any],
    endpoint: tuple[str, str],
    body: bytes,
    content_type: str,
    auth: str,
    garbage: str,
    idempotency: str | None,
    order_id: str,
) -> None:
    method, template = endpoint
    path = template.replace("{id}", quote(order_id, safe="") or "x")
    headers: dict[str, str] = {}
    if content_type:
        headers["Content-Type"] = content_type
    if auth == "bearer":
        headers["Authorization"] = identity["bearer"]
    elif auth in ("cookie", "cookie-csrf"):
        headers["Cookie"] = identity["cookie"]
        if auth == "cookie-csrf":
            headers["X-CSRF-Token"] = identity["csrf"]
    elif auth == "garbage":
        headers["Authorization"] = garbage
        headers["Cookie"] = f"sid={garbage.replace(';', '')}"
    if idempotency is not None:
        headers["Idempotency-Key"] = idempotency
    if template.endswith("/logout"):
        # Logging the shared identity out would end the fuzzing of everything else.
        headers.pop("Authorization", None) if auth == "bearer" else headers.pop(
            "X-CSRF-Token", None
        )
    before = dbsize(stack.ports.data_store)
    status, response_type, payload = send(
        stack.ports.gateway, method, path, body if method == "POST" else None, headers
    )
    check(status, response_type, payload)
    if status >= 400:
        assert dbsize(stack.ports.data_store) == before, (method, path, status)


@FUZZ
@given(
    segments=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4),
    prefix=st.sampled_from(["/auth/", "/orders/", "/"]),
    query=st.text(max_size=40),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
)
def test_fuzz_paths_and_queries(
    stack: Stack, segments: list[str], prefix: str, query: str, method: str
) -> None:
    path = prefix + "/".join(quote(s, safe="./%;\\") for s in segments)
    path += "?" + quote(query, safe="=&%")
    status, content_type, payload = send(stack.ports.gateway, method, path, None, {})
    check(status, content_type, payload, method)
