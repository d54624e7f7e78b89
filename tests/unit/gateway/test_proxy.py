"""The gateway's path policing and header hygiene."""

from __future__ import annotations

import re

import pytest

from services.common.problems import ProblemError
from services.common.settings import ConfigError
from services.gateway.proxy import (
    check_forwardable,
    check_path,
    forward_headers,
    replace_header,
    response_headers,
    upstream_address,
)
from services.gateway.settings import Settings
from services.gateway.upstream import Address


@pytest.mark.parametrize(
    "path",
    [
        "/orders",
        "/orders/abc",
        "/auth/.well-known/jwks.json",
        "/auth/users",
        "/orders/...",  # three dots is a name, not a step
        "/.hidden",
        "/orders/a..b",
    ],
)
def test_plain_paths_pass(path: str) -> None:
    assert check_path(path + "?limit=5") == path


@pytest.mark.parametrize(
    "path",
    [
        "/auth/../orders",
        "/auth/./users",
        "/auth/%2e%2e/orders",
        "/orders/%2F..",
        "/orders//x",
        "/auth/..%2forders",
        "/orders\\..\\auth",
        "/orders/x;y",
        "/orders/",
        "orders",
        "/orders/\x00",
        "/auth/%00",
        "/orders/..",  # a step up at the very end
        "/orders/.",
        "/..",
        "/",
        "",
        "//orders",
        "/orders/\u00e9",
        "/orders\n",
    ],
)
def test_tricky_paths_refused(path: str) -> None:
    with pytest.raises(ProblemError) as info:
        check_path(path)
    assert info.value.status == 400


def test_identity_and_hop_by_hop_headers_are_stripped() -> None:
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request(
        "GET",
        "/orders",
        headers={
            "Authorization": "Bearer t",
            "X-User-Id": "admin",
            "X-Auth-Subject": "admin",
            "X-Forwarded-For": "1.2.3.4",
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "hop",
            "Keep-Alive": "timeout=5",
            "Accept": "application/json",
            "X-Request-ID": "client-chosen",
        },
    )
    from services.common.observability import request_id_key

    request[request_id_key] = "rid-1"
    forwarded = forward_headers(request)
    names = [name.lower() for name, _ in forwarded]
    assert len(names) == len(set(names))  # one of each: the gateway's own replace the client's
    headers = dict(forwarded)
    assert headers["Authorization"] == "Bearer t" and headers["Accept"] == "application/json"
    assert headers["X-Request-ID"] == "rid-1"
    for gone in ("X-User-Id", "X-Auth-Subject", "Connection", "X-Secret", "Keep-Alive"):
        assert gone not in headers
    assert headers.get("X-Forwarded-For") != "1.2.3.4"


@pytest.mark.parametrize("value", ["a\tb", "caf\u00e9", "line\u2028sep", "next\x85", ""])
def test_headers_forwarded_as_they_arrived_pass(value: str) -> None:
    from aiohttp.test_utils import make_mocked_request

    check_forwardable(make_mocked_request("GET", "/orders", headers={"X-Note": value}))


# (A raw byte outside UTF-8 arrives as a lone surrogate; tests/security sends those raw.)
@pytest.mark.parametrize("value", ["a\x01b", "del\x7f", "esc\x1b", "bell\x07", "cr\rlf"])
def test_headers_that_would_not_arrive_unchanged_are_400(value: str) -> None:
    from aiohttp.test_utils import make_mocked_request

    with pytest.raises(ProblemError) as info:
        check_forwardable(make_mocked_request("GET", "/orders", headers={"X-Note": value}))
    assert info.value.status == 400


def test_the_upstreams_framing_and_request_id_headers_are_not_copied() -> None:
    # The hop-by-hop fields never get this far: the upstream client drops them
    # (tests/integration/gateway/test_upstream.py::test_answer_headers_are_end_to_end_only).
    upstream = [
        ("Content-Type", "application/json"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Length", "12"),
        ("Server", "Python/3.11 aiohttp/3"),
        ("date", "Mon, 23 Nov 2026 07:00:00 GMT"),
        ("X-Request-ID", "rid-1"),
    ]
    assert response_headers(upstream) == [
        ("Content-Type", "application/json"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]  # the request id is the gateway's own (the upstream's would make two)


@pytest.mark.parametrize(
    "url, says",
    [
        ("https://orders:8082", "http://host[:port]"),
        ("orders:8082", "http://host[:port]"),
        ("http://:8082", "host is required"),
        ("http://orders:8082/api", "no path"),
        ("http://orders:8082?x=1", "no query"),
        ("http://orders:8082#top", "no query or fragment"),
    ],
)
def test_an_upstream_is_plain_http_to_a_host(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)) as refused:
        Settings.from_env({"ORDERS_UPSTREAMS": f"http://127.0.0.1:8082,{url}"})
    assert str(refused.value).startswith("ORDERS_UPSTREAMS: ")


def test_an_upstreams_credentials_are_refused_and_never_shown() -> None:
    with pytest.raises(ConfigError, match="no user or password") as refused:
        Settings.from_env({"AUTH_UPSTREAMS": "http://admin:hunter2@auth:8081"})
    assert "hunter2" not in str(refused.value) and "admin" not in str(refused.value)


def test_an_upstream_address_keeps_the_host_and_port() -> None:
    assert upstream_address("http://orders:8082/") == Address("orders", 8082)
    assert upstream_address("http://[::1]:8082") == Address("::1", 8082)
    assert Address("::1", 8082).authority == "[::1]:8082"
    assert upstream_address("http://orders") == Address("orders", 80)


def test_a_header_is_replaced_whatever_its_case() -> None:
    headers = [("Cookie", "sid=1"), ("authorization", "Bearer a"), ("Accept", "*/*")]
    swapped = replace_header(replace_header(headers, "Cookie", None), "Authorization", "Bearer b")
    assert swapped == [("Accept", "*/*"), ("Authorization", "Bearer b")]
    assert headers[0] == ("Cookie", "sid=1")  # the caller's list is left as it was
