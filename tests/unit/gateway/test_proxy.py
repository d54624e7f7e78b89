"""The gateway's path policing and header hygiene."""

from __future__ import annotations

import pytest

from services.common.problems import ProblemError
from services.gateway.proxy import check_path, forward_headers


@pytest.mark.parametrize(
    "path", ["/orders", "/orders/abc", "/auth/.well-known/jwks.json", "/auth/users"]
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
        },
    )
    from services.common.observability import request_id_key

    request[request_id_key] = "rid-1"
    headers = forward_headers(request)
    assert headers["Authorization"] == "Bearer t" and headers["Accept"] == "application/json"
    assert headers["X-Request-ID"] == "rid-1"
    for gone in ("X-User-Id", "X-Auth-Subject", "Connection", "X-Secret", "Keep-Alive"):
        assert gone not in headers
    assert headers.get("X-Forwarded-For") != "1.2.3.4"
