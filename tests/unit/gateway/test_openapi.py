"""/openapi.json: a valid OpenAPI 3.1 document listing exactly the contract's routes, and the
check every suite response goes through (tests/openapi_check.py) refuses what breaks it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi_spec_validator import validate

from services.gateway.app import create_app
from services.gateway.openapi import GATEWAY_OWN_PATHS, document
from services.gateway.settings import Settings
from tests.openapi_check import check_response
from tests.unit.test_api_doc import OWN_ROUTES, bench_documented, documented

PROBLEM = "application/problem+json"


def test_the_document_validates() -> None:
    validate(document())
    validate(document(bench=True))


def test_it_lists_exactly_the_contract_routes() -> None:
    listed = {
        (method.upper(), path.replace("{id}", "{}"))
        for path, item in document()["paths"].items()
        for method in item
        if path not in OWN_ROUTES | GATEWAY_OWN_PATHS
    }
    assert listed == {(m, p) for m, p in documented() if not p.startswith("/internal/")}
    with_bench = {
        (method.upper(), path.replace("{id}", "{}"))
        for path, item in document(bench=True)["paths"].items()
        for method in item
        if path not in OWN_ROUTES | GATEWAY_OWN_PATHS
    }
    assert with_bench == listed | bench_documented()


async def test_the_gateway_serves_it(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(Settings.from_env({"GATEWAY_EDGE_AUTH": "0"})))
    response = await client.get("/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.json() == json.loads(json.dumps(document()))
    # The relay chain's routes are in it while the gateway routes them.
    settings = Settings.from_env(
        {"GATEWAY_EDGE_AUTH": "0", "RELAY_UPSTREAMS": "http://127.0.0.1:1"}
    )
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/openapi.json")
    assert await response.json() == json.loads(json.dumps(document(bench=True)))


def test_the_response_check_refuses_what_breaks_the_document() -> None:
    order = {
        "id": "0" * 32,
        "item": "tea",
        "quantity": 1,
        "owner": "u",
        "created_at": "2026-01-01T00:00:00Z",
    }
    check_response(
        "GET", "/orders/" + "0" * 32, 200, "application/json", json.dumps(order).encode()
    )
    check_response("GET", "/no/such/route", 200, "text/html", b"<p>")  # not ours to judge
    problem = {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "x"}
    check_response("GET", "/orders/x", 404, PROBLEM, json.dumps(problem).encode())
    for status, content_type, body in (
        (200, "application/json", {**order, "quantity": "1"}),  # wrong type
        (200, "application/json", {"id": "0" * 32}),  # missing fields
        (200, "text/plain", order),  # undeclared content type
        (404, PROBLEM, {"title": "Not Found"}),  # not problem details
    ):
        with pytest.raises(AssertionError):
            check_response(
                "GET", "/orders/" + "0" * 32, status, content_type, json.dumps(body).encode()
            )
    with pytest.raises(AssertionError):
        check_response("POST", "/auth/logout", 204, "application/octet-stream", b"body")
