"""docs/API.md is the contract in the repository: every route a service registers is in it,
every route it lists is registered, and the gateway forwards exactly those."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from services.auth.app import create_app as create_auth
from services.auth.settings import Settings as AuthSettings
from services.gateway.app import AUTH_PATHS, forwarded_routes
from services.gateway.settings import Settings as GatewaySettings
from services.orders.app import create_app as create_orders
from services.orders.settings import Settings as OrdersSettings
from services.relay.app import create_app as create_relay
from services.relay.settings import Settings as RelaySettings
from tests.conftest import KeyMaterial

DOC = Path(__file__).resolve().parents[2] / "docs" / "API.md"
OWN_ROUTES = {"/healthz", "/readyz", "/metrics"}  # every service's own address, not routed
BENCH = "\n## Bench topology"


def _rows(text: str) -> set[tuple[str, str]]:
    rows = re.findall(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/[^`?]*)", text, re.M)
    return {(method, re.sub(r"\{[^}]+\}", "{}", path)) for method, path in rows}


def documented() -> set[tuple[str, str]]:
    """(method, path) of every row of the contract's endpoint tables, `{param}` names
    normalised (the bench's relay routes are bench_documented())."""
    endpoints = DOC.read_text().partition("\n## Endpoints")[2]
    return _rows(endpoints.partition(BENCH)[0])


def bench_documented() -> set[tuple[str, str]]:
    """(method, path) of the rows of "Bench topology": the relay chain's routes."""
    return _rows(DOC.read_text().partition(BENCH)[2])


def registered(app: web.Application, prefix: str = "") -> set[tuple[str, str]]:
    """Routes as a client of the gateway names them; /internal/* only on the service itself."""
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method == "HEAD" or path in OWN_ROUTES:
            continue
        public = "" if path.startswith("/internal/") else prefix
        routes.add((route.method, public + re.sub(r"\{[^}]+\}", "{}", path)))
    return routes


def test_the_doc_is_the_shared_contract_plus_its_status_note() -> None:
    text = DOC.read_text()
    assert text.startswith("# authscale public contract")
    for own in OWN_ROUTES:
        assert f"`GET {own}`" in text


def test_every_registered_route_is_documented_and_the_reverse(key_material: KeyMaterial) -> None:
    env = {
        "KEYS_DIR": str(key_material.directory),
        "JWT_PUBLIC_KEY_FILE": str(key_material.directory / "public.pem"),
    }
    services = registered(create_auth(AuthSettings.from_env(env)), "/auth") | registered(
        create_orders(OrdersSettings.from_env(env))
    )
    assert services == documented()


def test_the_relay_routes_are_the_documented_bench_routes(key_material: KeyMaterial) -> None:
    env = {"JWT_PUBLIC_KEY_FILE": str(key_material.directory / "public.pem")}
    relay = registered(create_relay(RelaySettings.from_env(env)))
    assert relay == bench_documented() == {("GET", "/relay/private"), ("GET", "/relay/public")}
    routed = {route.pattern for route in forwarded_routes(GatewaySettings.from_env({}))}
    with_relays = GatewaySettings.from_env({"RELAY_UPSTREAMS": "http://127.0.0.1:1"})
    added = {route.pattern for route in forwarded_routes(with_relays)} - routed
    assert {("GET", path) for path in added} == relay


def test_the_gateway_forwards_exactly_the_documented_auth_routes() -> None:
    assert {path for _, path in documented() if path.startswith("/auth/")} == set(AUTH_PATHS)
