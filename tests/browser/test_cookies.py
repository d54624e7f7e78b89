"""The cookie credentials' browser claims, in a real Chromium, for `sid` and for `at`.

Every login is a real JSON login through the gateway, made by a page of the gateway's own origin
(a same-origin fetch, as the first-party app would), so the browser stores the cookies exactly as
the gateway set them. The attacks come from pages on another port of the same host (same site,
cross-origin) and on `localhost` (another site: the gateway is on 127.0.0.1).

Long because each cookie claim needs its own pages and origins in one browser session.
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, Response

from devstack.stack import Stack
from tests.browser.conftest import Pages
from tests.stackutil import Api

pytestmark = pytest.mark.asyncio(loop_scope="module")

SAME_SITE_HOST = "127.0.0.1"  # the gateway's host, another port: same site, cross-origin
CROSS_SITE_HOST = "localhost"  # another site as far as cookies are concerned


@dataclass(frozen=True)
class Carrier:
    name: str  # the cookie that authenticates requests
    login_path: str
    login_extra: dict[str, str]
    response_fields: frozenset[str]  # all a script can read of the login's answer
    cookies: frozenset[str]  # every cookie the login sets


CARRIERS = {
    "sid": Carrier("sid", "/auth/session", {}, frozenset({"csrf_token"}), frozenset({"sid"})),
    "at": Carrier(
        "at",
        "/auth/token",
        {"carrier": "cookie"},
        frozenset({"csrf_token", "expires_in"}),
        frozenset({"at", "rt"}),
    ),
}


@pytest.fixture(params=sorted(CARRIERS))
def carrier(request: pytest.FixtureRequest) -> Carrier:
    return CARRIERS[request.param]


@dataclass
class LoggedIn:
    page: Page  # on the gateway's origin
    csrf: str
    jar: dict[str, dict[str, Any]]  # the browser's cookies for the gateway, by name, after login
    carrier: Carrier

    @property
    def credential(self) -> str:
        return str(self.jar[self.carrier.name]["value"])

    @property
    def cookie(self) -> dict[str, str]:
        """The same credential, for an HTTP client outside the browser."""
        return {"Cookie": f"{self.carrier.name}={self.credential}"}


FETCH_JS = """async ([path, method, headers, body]) => {
    const init = {method, headers};
    if (body !== null) {
        init.body = JSON.stringify(body);
        init.headers = {...headers, 'Content-Type': 'application/json'};
    }
    const response = await fetch(path, init);
    const text = await response.text();
    return {status: response.status, body: text ? JSON.parse(text) : null};
}"""


async def gateway_fetch(
    page: Page,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> tuple[int, Any]:
    """A same-origin fetch from the gateway page: the browser adds its cookies itself."""
    result = await page.evaluate(FETCH_JS, [path, method, headers or {}, body])
    return int(result["status"]), result["body"]


async def cookie_jar(context: BrowserContext, stack: Stack) -> dict[str, dict[str, Any]]:
    """Every cookie the browser holds for the gateway's host, whatever its path."""
    host = stack.gateway_url.split("//", 1)[1].rsplit(":", 1)[0]
    return {c["name"]: dict(c) for c in await context.cookies() if c.get("domain") == host}


async def log_in(context: BrowserContext, stack: Stack, api: Api, carrier: Carrier) -> LoggedIn:
    username, _ = await api.signup()
    page = await context.new_page()
    landing = await page.goto(stack.gateway_url + "/healthz")
    assert landing is not None and landing.status == 200
    assert await cookie_jar(context, stack) == {}
    status, body = await gateway_fetch(
        page,
        "POST",
        carrier.login_path,
        body={"username": username, "password": "correct horse", **carrier.login_extra},
    )
    assert status == 200, body
    # The script that logged in holds the CSRF token and nothing that authenticates.
    assert set(body) == carrier.response_fields
    jar = await cookie_jar(context, stack)
    assert set(jar) == carrier.cookies, jar  # the browser stored what the gateway set
    return LoggedIn(page, body["csrf_token"], jar, carrier)


async def place_order(logged: LoggedIn, item: str) -> dict[str, Any]:
    """The legitimate write: the page echoes its CSRF token, and the order is created."""
    status, order = await gateway_fetch(
        logged.page,
        "POST",
        "/orders",
        headers={"X-CSRF-Token": logged.csrf},
        body={"item": item, "quantity": 1},
    )
    assert status == 201, order
    return dict(order)


async def orders_of(api: Api, logged: LoggedIn) -> list[dict[str, Any]]:
    response, body = await api.call("GET", "/orders", headers=logged.cookie)
    assert response.status == 200, body
    return list(body["orders"])


# A form a hostile page submits on load. enctype text/plain with this name/value split sends the
# body {"item":"forged","quantity":1,"pad":"="}: the classic way to forge a JSON body in a form.
FORM_HTML = """<!doctype html>
<form id="attack" method="POST" action="{action}" enctype="text/plain">
<input type="hidden" name="{name}" value="{value}">
</form>
<script>document.getElementById('attack').submit();</script>"""


async def submit_hostile_form(page: Page, pages: Pages, host: str, action: str) -> Response:
    """Open a page on http://{host}:{pages.port} that POSTs a form to `action`; the answer."""
    path = f"/form-{uuid.uuid4().hex}"
    pages.serve(
        path,
        FORM_HTML.format(
            action=html.escape(action),
            name=html.escape('{"item":"forged","quantity":1,"pad":"'),
            value=html.escape('"}'),
        ),
    )
    async with page.expect_response(
        lambda r: r.url == action and r.request.method == "POST"
    ) as answer:
        await page.goto(pages.url(host, path))
    return await answer.value


async def still_logged_in(api: Api, logged: LoggedIn) -> None:
    response, _ = await api.call("GET", "/auth/me", headers=logged.cookie)
    assert response.status == 200


async def test_the_cookie_is_invisible_to_document_cookie(
    context: BrowserContext, stack: Stack, api: Api, pages: Pages, carrier: Carrier
) -> None:
    logged = await log_in(context, stack, api, carrier)
    for name in carrier.cookies:
        assert logged.jar[name]["httpOnly"] is True, logged.jar[name]
    assert logged.jar[carrier.name]["sameSite"] == "Lax"
    if carrier.name == "at":
        assert logged.jar["rt"]["sameSite"] == "Strict"
        assert logged.jar["rt"]["path"] == "/auth/refresh"
    assert await logged.page.evaluate("document.cookie") == ""
    # document.cookie does work on these pages, and sees the host's cookies whatever the port: a
    # cookie written by a page on another port of the gateway's host shows on the gateway's page.
    # So the credential is missing from it because it is HttpOnly, not because nothing is there.
    pages.serve("/neighbour", "<!doctype html><p>same host, another port</p>")
    neighbour = await context.new_page()
    await neighbour.goto(pages.url(SAME_SITE_HOST, "/neighbour"))
    await neighbour.evaluate("document.cookie = 'probe=1; path=/'")
    assert await neighbour.evaluate("document.cookie") == "probe=1"
    assert await logged.page.evaluate("document.cookie") == "probe=1"
    assert set(await cookie_jar(context, stack)) == {*carrier.cookies, "probe"}
    # And the cookie does authenticate the page's own requests.
    status, me = await gateway_fetch(logged.page, "GET", "/auth/me")
    assert status == 200 and me["auth"] == ("session" if carrier.name == "sid" else "jwt"), me


@dataclass(frozen=True)
class Forged:
    """A logged-in page with one legitimate order, and a hostile page's forged order POST."""

    logged: LoggedIn
    mine: dict[str, Any]  # the legitimate order
    attacker: Page
    answer: Response  # the gateway's answer to the forged POST
    sent: dict[str, str]  # the headers the browser sent with it


async def forge_order(
    context: BrowserContext, stack: Stack, api: Api, pages: Pages, carrier: Carrier, host: str
) -> Forged:
    """Log in and place an order, then let a page on `host` submit a forged order form."""
    logged = await log_in(context, stack, api, carrier)
    mine = await place_order(logged, "legitimate")
    attacker = await context.new_page()
    answer = await submit_hostile_form(attacker, pages, host, stack.gateway_url + "/orders")
    return Forged(logged, mine, attacker, answer, await answer.request.all_headers())


async def test_a_cross_site_form_post_arrives_without_the_cookie(
    context: BrowserContext, stack: Stack, api: Api, pages: Pages, carrier: Carrier
) -> None:
    forged = await forge_order(context, stack, api, pages, carrier, CROSS_SITE_HOST)
    sent, answer = forged.sent, forged.answer
    assert sent["sec-fetch-site"] == "cross-site"  # the browser saw it as cross-site
    assert "cookie" not in sent, sent["cookie"]  # SameSite kept every cookie back
    assert answer.status == 401, await answer.text()
    assert await orders_of(api, forged.logged) == [forged.mine]  # nothing was created
    await still_logged_in(api, forged.logged)


async def test_a_same_site_cross_origin_form_post_needs_the_csrf_token(
    context: BrowserContext, stack: Stack, api: Api, pages: Pages, carrier: Carrier
) -> None:
    forged = await forge_order(context, stack, api, pages, carrier, SAME_SITE_HOST)
    sent, answer, logged = forged.sent, forged.answer, forged.logged
    assert sent["sec-fetch-site"] == "same-site"
    # Same site: the Lax cookie rides along (and only it: rt is Strict and scoped to refresh).
    assert sent.get("cookie") == f"{carrier.name}={logged.credential}", sent
    assert answer.status == 403, await answer.text()
    assert await orders_of(api, logged) == [forged.mine]
    # A forged logout is refused the same way, and the browser keeps its cookies.
    answer = await submit_hostile_form(
        forged.attacker, pages, SAME_SITE_HOST, stack.gateway_url + "/auth/logout"
    )
    assert answer.status == 403, await answer.text()
    assert set(await cookie_jar(context, stack)) == carrier.cookies
    await still_logged_in(api, logged)


READ_JS = """async ([url, mode]) => {
    try {
        const response = await fetch(url, {credentials: 'include', mode});
        return {outcome: 'resolved', type: response.type, status: response.status,
                body: await response.text(), headers: [...response.headers.keys()]};
    } catch (error) {
        return {outcome: 'rejected', error: error.name};
    }
}"""


async def test_a_cross_origin_fetch_cannot_read_the_response(
    context: BrowserContext, stack: Stack, api: Api, pages: Pages, carrier: Carrier
) -> None:
    logged = await log_in(context, stack, api, carrier)
    mine = await place_order(logged, "secret")
    target = stack.gateway_url + "/orders"
    # There is something to steal: the gateway's own page reads it.
    own = await logged.page.evaluate(READ_JS, [target, "cors"])
    assert own["outcome"] == "resolved" and own["status"] == 200, own
    assert mine["id"] in own["body"]
    pages.serve("/reader", "<!doctype html><p>reader</p>")
    for host in (SAME_SITE_HOST, CROSS_SITE_HOST):
        reader = await context.new_page()
        await reader.goto(pages.url(host, "/reader"))
        # A CORS read: no Access-Control-Allow-Origin comes back, so the promise rejects.
        read = await reader.evaluate(READ_JS, [target, "cors"])
        assert read == {"outcome": "rejected", "error": "TypeError"}, (host, read)
        # no-cors: the request goes out (with the cookie, from the same site) and the answer
        # is opaque to the script: no status, no headers, no body.
        async with reader.expect_response(target) as answered:
            opaque = await reader.evaluate(READ_JS, [target, "no-cors"])
        assert opaque == {
            "outcome": "resolved",
            "type": "opaque",
            "status": 0,
            "body": "",
            "headers": [],
        }, (host, opaque)
        network = await answered.value
        # Same site, the cookie went along and the browser received the user's orders (200:
        # without a credential GET /orders is 401), yet kept them from the page. Cross site, the
        # cookie stayed home.
        assert network.status == (200 if host == SAME_SITE_HOST else 401), host
        await reader.close()


async def test_logout_clears_the_cookies_in_the_browser(
    context: BrowserContext, stack: Stack, api: Api, carrier: Carrier
) -> None:
    logged = await log_in(context, stack, api, carrier)
    status, _ = await gateway_fetch(
        logged.page, "POST", "/auth/logout", headers={"X-CSRF-Token": logged.csrf}
    )
    assert status == 204
    # The fetch resolved after the browser applied the answer's Set-Cookie headers.
    assert await context.cookies() == []
    status, _ = await gateway_fetch(logged.page, "GET", "/auth/me")
    assert status == 401
    # And the values the browser dropped are dead on the server too.
    await api.refused_within(logged.cookie)
    if carrier.name == "at":
        response, body = await api.call(
            "POST",
            "/auth/refresh",
            headers={"Cookie": f"rt={logged.jar['rt']['value']}", "X-CSRF-Token": logged.csrf},
        )
        assert response.status == 401, body
