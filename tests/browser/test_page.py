"""The page at `/` in a real Chromium: the three logins, what the browser and the server hold,
one timeline entry per verifying hop (the same as the Server-Timing header), each hop refusing
after logout (or accepting, with JWT_REVOCATION=off), the hybrid, and the CSP holding throughout.
The session test takes a screenshot; with UPDATE_SCREENSHOT=1 it becomes the README's
(docs/page.png), so an ordinary run leaves the work tree as it was.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, ConsoleMessage, Page

from devstack.client import ensure_user
from devstack.launcher import DEMO_USER
from devstack.stack import Stack
from services.common.settings import REPO_ROOT
from services.common.verify import timing
from tests.stackutil import running

pytestmark = pytest.mark.asyncio(loop_scope="module")

README_SCREENSHOT = REPO_ROOT / "docs" / "page.png"
EXPECTED_REFUSAL = re.compile(r"^Failed to load resource: .* status of (401|403) ")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    """As `make up` runs it: per-hop timings on, the demo user there."""
    for launched in running(tmp_path_factory.mktemp("page"), SERVER_TIMING="1"):
        ensure_user(launched.gateway_url, *DEMO_USER)
        yield launched


class Watched:
    """A page of the gateway's origin, with every console error, page error and CSP
    violation it reports."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        # Chromium logs every 4xx answer to a fetch; the refusals the tests ask for are no error.
        if message.type == "error" and not EXPECTED_REFUSAL.search(message.text):
            self.errors.append(f"console: {message.text}")

    async def open(self, base: str) -> None:
        response = await self.page.goto(base + "/")
        assert response is not None and response.status == 200
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        # Counted in the page: a violation of the policy is an event there.
        await self.page.evaluate(
            "() => { window.violations = [];"
            " document.addEventListener('securitypolicyviolation',"
            " (e) => window.violations.push(e.violatedDirective)); }"
        )
        await self.page.wait_for_selector("#design [data-setting='SERVER_TIMING'] dd")

    async def sign_up(self) -> str:
        username = "p" + uuid.uuid4().hex[:12]
        await self.page.fill("#username", username)
        await self.page.fill("#password", "correct horse")
        await self.page.click("#signup")
        await self.page.wait_for_selector("#login-status:has-text('Signed up')")
        return username

    async def log_in(self, kind: str) -> dict[str, Any]:
        """Click a login button; the login's JSON answer."""
        path = "/auth/session" if kind == "session" else "/auth/token"
        async with self.page.expect_response(lambda r: r.url.endswith(path)) as answer:
            await self.page.click(f"#login-{kind}")
        response = await answer.value
        assert response.status == 200
        await self.page.wait_for_selector("#login-status:has-text('Logged in')")
        body: dict[str, Any] = await response.json()
        return body

    async def request(self, button: str) -> list[timing.Timing]:
        """Click a request button; the Server-Timing entries of its answer, once drawn."""
        async with self.page.expect_response(lambda r: "/orders" in r.url) as answer:
            await self.page.click(button)
        response = await answer.value
        await self.page.wait_for_selector("#request-status:has-text('answered')")
        header = await response.header_value("server-timing")
        return timing.parse([header] if header else [])

    async def rows(self, list_id: str) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = await self.page.eval_on_selector_all(
            f"#{list_id} li", "rows => rows.map(r => ({...r.dataset}))"
        )
        return rows

    async def log_out(self) -> list[dict[str, str]]:
        await self.page.click("#logout")
        await self.page.wait_for_selector("#refusals li", timeout=10_000)
        return await self.rows("refusals")

    async def clean(self) -> None:
        violations = await self.page.evaluate("() => window.violations")
        assert violations == [] and self.errors == [], (violations, self.errors)


@pytest_asyncio.fixture(loop_scope="module")
async def page(context: BrowserContext) -> AsyncIterator[Watched]:
    watched = Watched(await context.new_page())
    yield watched


async def cookie_rows(page: Page) -> dict[str, dict[str, str]]:
    rows: list[dict[str, str]] = await page.eval_on_selector_all(
        "#cookies tbody tr[data-cookie]",
        "rows => rows.map(r => Object.fromEntries([['name', r.dataset.cookie],"
        " ...[...r.querySelectorAll('[data-flag]')].map(c => [c.dataset.flag, c.textContent])]))",
    )
    return {row["name"]: row for row in rows}


async def assert_rows_match_the_jar(page: Page, context: BrowserContext, names: set[str]) -> None:
    """What the page says the login set is what the browser actually stored."""
    shown = await cookie_rows(page)
    jar = {c["name"]: c for c in await context.cookies()}
    assert set(shown) == names and names <= set(jar)
    for name in names:
        cookie, row = jar[name], shown[name]
        assert cookie["httpOnly"] and row["httponly"] == "yes"
        assert row["samesite"] == cookie["sameSite"]
        assert row["secure"] == ("yes" if cookie["secure"] else "no")
        assert row["path"] == cookie["path"]
        assert row["readable"] == "no: HttpOnly"
    # And the script really cannot read them.
    readable = await page.evaluate("() => document.cookie")
    assert not any(f"{n}=" in readable for n in names)


def verifying(timings: list[timing.Timing]) -> list[tuple[str, str, str]]:
    return [(t.service, t.desc["credential"], t.desc["result"]) for t in timings]


def drawn(rows: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    return [(r["service"], r["credential"], r["result"]) for r in rows]


async def test_a_session_shows_both_sides_and_every_hop(
    stack: Stack, page: Watched, context: BrowserContext, tmp_path: Path
) -> None:
    await page.open(stack.gateway_url)
    await page.page.click("#use-demo")
    body = await page.log_in("session")
    assert set(body) == {"csrf_token"}
    await assert_rows_match_the_jar(page.page, context, {"sid"})
    record = page.page.locator("#server-record")
    assert await record.locator("[data-field='username']").text_content() == DEMO_USER[0]
    assert "in " in (await record.locator("[data-field='idle_expires_at']").text_content() or "")

    listed = await page.request("#list-orders")
    assert verifying(listed) == [("gateway", "session", "ok"), ("orders", "session", "ok")]
    rows = await page.rows("timeline")
    assert drawn(rows) == verifying(listed)  # one drawn entry per verifying hop
    assert [float(r["dur"]) for r in rows] == [t.dur_ms for t in listed]
    created = await page.request("#create-order")
    assert verifying(created) == [
        ("gateway", "session", "ok"),
        ("orders", "session", "ok"),
        ("auth", "session", "ok"),
    ]
    assert drawn(await page.rows("timeline")) == verifying(created)
    shot = (
        README_SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") == "1" else tmp_path / "page.png"
    )
    await page.page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG")

    refusals = await page.log_out()
    by_hop = {r["service"]: r["result"] for r in refusals}
    assert by_hop == {"gateway": "refused", "orders": "not-reached", "auth": "refused"}
    await page.clean()


async def test_a_bearer_token_is_decoded_and_refused_at_each_hop_after_logout(
    stack: Stack, page: Watched, context: BrowserContext
) -> None:
    await page.open(stack.gateway_url)
    await page.sign_up()
    body = await page.log_in("bearer")
    token = body["access_token"]
    assert await context.cookies() == []  # nothing in the jar: the page holds the token
    claims = json.loads(await page.page.text_content("#token-claims") or "")
    assert claims["sub"] and claims["jti"] and claims["exp"] > claims["iat"]
    header = json.loads(await page.page.text_content("#token-header") or "")
    assert header["alg"] == "RS256" and header["typ"] == "at+jwt"
    size = await page.page.get_attribute("#token-bytes", "data-bytes")
    assert size == str(len(f"Authorization: Bearer {token}\r\n"))
    assert claims["jti"] in (await page.page.text_content("#server-revocation") or "")
    assert await page.page.is_visible("#server-nothing")

    listed = await page.request("#list-orders")
    assert verifying(listed) == [("gateway", "jwt", "ok"), ("orders", "jwt", "ok")]
    assert drawn(await page.rows("timeline")) == verifying(listed)

    refusals = await page.log_out()
    by_hop = {r["service"]: (r.get("credential"), r["result"]) for r in refusals}
    assert by_hop["gateway"] == ("jwt", "refused") and by_hop["auth"] == ("jwt", "refused")
    assert "orders" not in by_hop or by_hop["orders"][1] == "not-reached"
    await page.clean()


async def test_a_cookie_jwt_shows_its_cookies_and_csrf_stays_required(
    stack: Stack, page: Watched, context: BrowserContext
) -> None:
    await page.open(stack.gateway_url)
    await page.sign_up()
    body = await page.log_in("cookie")
    assert set(body) == {"csrf_token", "expires_in"}
    await assert_rows_match_the_jar(page.page, context, {"at", "rt"})
    rows = await cookie_rows(page.page)
    assert rows["at"]["max-age"] == str(body["expires_in"])
    assert await page.page.is_visible("#server-nothing")
    listed = await page.request("#list-orders")
    assert verifying(listed) == [("gateway", "jwt", "ok"), ("orders", "jwt", "ok")]
    assert {t.desc["carrier"] for t in listed} == {"cookie"}
    # The page weakens nothing: an unsafe request without the CSRF token is still refused.
    status = await page.page.evaluate(
        "() => fetch('/orders', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({item: 'x', quantity: 1})}).then(r => r.status)"
    )
    assert status == 403
    refusals = await page.log_out()
    assert {r["service"]: r["result"] for r in refusals}["gateway"] == "refused"
    assert await context.cookies() == []  # the logout cleared both cookies
    await page.clean()


async def test_the_policy_blocks_inline_script(stack: Stack, page: Watched) -> None:
    await page.open(stack.gateway_url)
    ran = await page.page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1';"
        " document.body.append(s); return window.ran === 1; }"
    )
    assert ran is False
    await page.page.wait_for_function("() => window.violations.length > 0")
    assert await page.page.evaluate("() => window.violations") == ["script-src-elem"]


async def test_the_hybrid_sends_orders_an_internal_token(
    page: Watched, tmp_path: Path, redis_available: None
) -> None:
    for hybrid in running(tmp_path, SERVER_TIMING="1", GATEWAY_TOKEN_EXCHANGE="on"):
        await page.open(hybrid.gateway_url)
        assert (
            await page.page.text_content("#design [data-setting='GATEWAY_TOKEN_EXCHANGE'] dd")
            == "on"
        )
        await page.sign_up()
        await page.log_in("session")
        assert await page.page.is_visible("#hybrid-note")
        listed = await page.request("#list-orders")
        assert verifying(listed) == [("gateway", "session", "ok"), ("orders", "internal", "ok")]
        assert drawn(await page.rows("timeline")) == verifying(listed)
        created = await page.request("#create-order")
        assert [t.desc["credential"] for t in created] == ["session", "internal", "internal"]
        refusals = await page.log_out()
        assert {r["service"]: r["result"] for r in refusals}["gateway"] == "refused"
        await page.clean()


async def test_without_revocation_every_hop_keeps_accepting(
    page: Watched, tmp_path: Path, redis_available: None
) -> None:
    for stack in running(tmp_path, SERVER_TIMING="1", JWT_REVOCATION="off"):
        await page.open(stack.gateway_url)
        await page.sign_up()
        await page.log_in("bearer")
        assert "until its exp" in (await page.page.text_content("#server-revocation") or "")
        refusals = await page.log_out()
        assert drawn(refusals) == [
            ("gateway", "jwt", "ok"),
            ("orders", "jwt", "ok"),
            ("auth", "jwt", "ok"),
        ]
        await page.clean()
