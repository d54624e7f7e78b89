"""docs/API.md is the contract in the repository: every route a service registers is in it,
every route it lists is registered, and the gateway forwards exactly those."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from services.auth.app import create_app as create_auth
from services.auth.settings import Settings as AuthSettings
from services.gateway.app import AUTH_PATHS
from services.orders.app import create_app as create_orders
from services.orders.settings import Settings as OrdersSettings
from tests.conftest import KeyMaterial

DOC = Path(__file__).resolve().parents[2] / "docs" / "API.md"
OWN_ROUTES = {"/healthz", "/readyz", "/metrics"}  # every service's own address, not routed


def documented() -> set[tuple[str, str]]:
    """(method, path) of every row of the endpoint tables, `{param}` names normalised."""
    endpoints = DOC.read_text().partition("\n## Endpoints")[2]
    rows = re.findall(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/[^`?]*)", endpoints, re.M)
    return {(method, re.sub(r"\{[^}]+\}", "{}", path)) for method, path in rows}


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


def test_the_gateway_forwards_exactly_the_documented_auth_routes() -> None:
    assert {path for _, path in documented() if path.startswith("/auth/")} == set(AUTH_PATHS)
