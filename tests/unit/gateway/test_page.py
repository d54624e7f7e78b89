"""The page's files and GET /design: served from the package with the strict policy, and
nothing else of the static directory is reachable."""

from __future__ import annotations

from typing import Any

from services.gateway.app import create_app
from services.gateway.page import CONTENT_SECURITY_POLICY
from services.gateway.settings import Settings
from tests.conftest import KeyMaterial


async def test_the_page_and_its_assets_carry_the_policy(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(Settings.from_env({"GATEWAY_EDGE_AUTH": "0"})))
    for path, media in (
        ("/", "text/html"),
        ("/page.js", "text/javascript"),
        ("/page.css", "text/css"),
    ):
        response = await client.get(path)
        assert response.status == 200 and response.content_type == media, path
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    html = await (await client.get("/")).text()
    assert '<script src="/page.js"' in html and "<script>" not in html  # no inline script
    assert "http://" not in html and "https://" not in html  # no third-party fetch
    for path in ("/index.html", "/static/page.js", "/page.py", "/../page.py"):
        assert (await client.get(path)).status == 404, path


async def test_design_names_the_settings_and_nothing_secret(
    aiohttp_client: Any, key_material: KeyMaterial
) -> None:
    env = {
        "JWT_PUBLIC_KEY_FILE": str(key_material.directory / "public.pem"),
        "GATEWAY_EDGE_AUTH": "0",
        "GATEWAY_TOKEN_EXCHANGE": "on",
        "SESSION_CACHE": "push",
        "JWT_REVOCATION": "off",
        "SESSION_STORE_URL": "redis://:hunter2@127.0.0.1:1/0",
    }
    client = await aiohttp_client(create_app(Settings.from_env(env)))
    response = await client.get("/design")
    raw = await response.text()
    body = await response.json()
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert {k: body[k] for k in ("SESSION_CACHE", "GATEWAY_TOKEN_EXCHANGE", "JWT_REVOCATION")} == {
        "SESSION_CACHE": "push",
        "GATEWAY_TOKEN_EXCHANGE": "on",
        "JWT_REVOCATION": "off",
    }
    assert body["SERVER_TIMING"] == "off"
    assert body["cookies"]["session"] == {
        "name": "sid",
        "path": "/",
        "httponly": True,
        "samesite": "Lax",
        "secure": False,
        "max_age": "session",
    }
    assert "hunter2" not in raw and "redis" not in raw
