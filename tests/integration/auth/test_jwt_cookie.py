"""JWT in a cookie ("carrier": "cookie"): the cookie is only a carrier, CSRF is a signed double
submit bound to the token, refresh and logout work by cookie."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
from aiohttp.test_utils import TestClient

from services.common.verify import csrf_digest
from tests.integration.conftest import AuthClient, signup_and_login

PROBLEM = "application/problem+json"


async def cookie_login(client: TestClient[Any, Any], username: str) -> tuple[str, str, str, Any]:
    response = await client.post(
        "/token",
        json={"username": username, "password": "correct horse", "carrier": "cookie"},
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    client.session.cookie_jar.clear()
    return response.cookies["at"].value, response.cookies["rt"].value, body["csrf_token"], response


async def cookie_client(
    auth_client: AuthClient, username: str
) -> tuple[TestClient[Any, Any], str, str, str, Any]:
    """An auth client, and a user signed up on it and logged in with the JWT in a cookie: the
    client, then what cookie_login returns (access token, refresh token, CSRF token, response)."""
    client = await auth_client()
    await signup_and_login(client, username)
    return (client, *await cookie_login(client, username))


async def test_cookie_carrier_sets_httponly_cookies_and_binds_the_csrf_token(
    auth_client: AuthClient,
) -> None:
    client, at, rt, csrf, response = await cookie_client(auth_client, "carrie")
    body = await response.json()
    assert set(body) == {"csrf_token", "expires_in"}  # no token is readable by script
    assert response.headers["Cache-Control"] == "no-store"
    access, refresh = response.cookies["at"], response.cookies["rt"]
    assert access["httponly"] and access["samesite"] == "Lax" and access["path"] == "/"
    assert int(access["max-age"]) == body["expires_in"] == 300
    assert refresh["httponly"] and refresh["samesite"] == "Strict"
    assert refresh["path"] == "/auth/refresh"
    assert not access["secure"] and not refresh["secure"]
    claims = jwt.decode(at, options={"verify_signature": False})
    assert claims["csrf"] == csrf_digest(csrf) and claims["csrf"] != csrf
    assert rt and len(rt) >= 40
    me = await client.get("/me", headers={"Cookie": f"at={at}"})
    assert me.status == 200 and (await me.json())["auth"] == "jwt"


async def test_carrier_must_be_header_or_cookie(auth_client: AuthClient) -> None:
    client = await auth_client()
    await signup_and_login(client, "picky")
    for carrier in ("Cookie", "body", 1, None):
        response = await client.post(
            "/token", json={"username": "picky", "password": "correct horse", "carrier": carrier}
        )
        assert response.status == 422 and response.content_type == PROBLEM
    response = await client.post(
        "/token", json={"username": "picky", "password": "correct horse", "carrier": "header"}
    )
    assert response.status == 200 and "access_token" in await response.json()
    assert "at" not in response.cookies


async def test_secure_cookies_use_the_host_and_secure_prefixes(auth_client: AuthClient) -> None:
    client = await auth_client(COOKIE_SECURE="1")
    await signup_and_login(client, "secure")
    response = await client.post(
        "/token", json={"username": "secure", "password": "correct horse", "carrier": "cookie"}
    )
    assert response.status == 200
    access, refresh = response.cookies["__Host-at"], response.cookies["__Secure-rt"]
    assert access["secure"] and refresh["secure"] and access["path"] == "/"
    me = await client.get("/me", headers={"Cookie": f"__Host-at={access.value}"})
    assert me.status == 200
    # The plain name is not read when the secure names are configured.
    me = await client.get("/me", headers={"Cookie": f"at={access.value}"})
    assert me.status == 401


async def test_which_credential_judges_header_then_at_then_sid(auth_client: AuthClient) -> None:
    client = await auth_client()
    await signup_and_login(client, "first")
    other = await signup_and_login(client, "second")
    at, _, _, _ = await cookie_login(client, "first")
    response = await client.post(
        "/session", json={"username": "second", "password": "correct horse"}
    )
    sid = response.cookies["sid"].value
    client.session.cookie_jar.clear()
    header = {"Authorization": f"Bearer {other['access_token']}"}
    me = await (await client.get("/me", headers={**header, "Cookie": f"at={at}"})).json()
    assert me["username"] == "second" and me["auth"] == "jwt"
    me = await (await client.get("/me", headers={"Cookie": f"sid={sid}; at={at}"})).json()
    assert me["username"] == "first" and me["auth"] == "jwt"
    # A broken header is judged alone: the valid cookie behind it does not rescue it.
    response = await client.get("/me", headers={"Authorization": "Bearer x", "Cookie": f"at={at}"})
    assert response.status == 401


async def test_logout_by_cookie_needs_the_csrf_token_and_clears_the_cookies(
    auth_client: AuthClient,
) -> None:
    client, at, _, csrf, _ = await cookie_client(auth_client, "leaving")
    cookie = {"Cookie": f"at={at}"}
    for sent in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": csrf_digest(csrf)}):
        response = await client.post("/logout", headers={**cookie, **sent})
        assert response.status == 403 and response.content_type == PROBLEM
        assert (await client.get("/me", headers=cookie)).status == 200  # nothing changed
    response = await client.post("/logout", headers={**cookie, "X-CSRF-Token": csrf})
    assert response.status == 204
    assert response.cookies["at"]["max-age"] == "0" and response.cookies["at"].value == ""
    assert response.cookies["rt"]["max-age"] == "0"
    assert response.cookies["rt"]["path"] == "/auth/refresh"
    deadline = time.monotonic() + 1
    while (await client.get("/me", headers=cookie)).status != 401:
        assert time.monotonic() < deadline, "the logged-out token still works"
        await asyncio.sleep(0.01)


async def test_a_header_token_put_in_the_cookie_has_no_csrf_binding(
    auth_client: AuthClient,
) -> None:
    client = await auth_client()
    pair = await signup_and_login(client, "plain")
    cookie = {"Cookie": f"at={pair['access_token']}"}
    assert (await client.get("/me", headers=cookie)).status == 200  # a carrier like any other
    response = await client.post("/logout", headers={**cookie, "X-CSRF-Token": "anything"})
    assert response.status == 403  # no csrf claim: no unsafe request by cookie
    # The same token in the header needs no CSRF token.
    header = {"Authorization": f"Bearer {pair['access_token']}"}
    assert (await client.post("/logout", headers=header)).status == 204


async def test_refresh_by_cookie_rotates_and_a_replay_kills_the_family(
    auth_client: AuthClient,
) -> None:
    client, _, rt, csrf, _ = await cookie_client(auth_client, "rotor")
    cookie = {"Cookie": f"rt={rt}"}
    # Without (or with a wrong) CSRF token: 403, and the refresh token is not spent.
    for sent in ({}, {"X-CSRF-Token": "wrong"}):
        response = await client.post("/refresh", headers={**cookie, **sent})
        assert response.status == 403
    response = await client.post("/refresh", headers={**cookie, "X-CSRF-Token": csrf})
    assert response.status == 200, await response.text()
    body = await response.json()
    new_at, new_rt = response.cookies["at"].value, response.cookies["rt"].value
    assert set(body) == {"csrf_token", "expires_in"} and body["csrf_token"] != csrf
    assert new_rt != rt
    claims = jwt.decode(new_at, options={"verify_signature": False})
    assert claims["csrf"] == csrf_digest(body["csrf_token"])
    assert (await client.get("/me", headers={"Cookie": f"at={new_at}"})).status == 200
    # The spent cookie comes back (a stolen copy): refused, and the whole family dies with it.
    replay = await client.post("/refresh", headers={**cookie, "X-CSRF-Token": csrf})
    assert replay.status == 401
    deadline = time.monotonic() + 1  # the revocation reaches every verifier within 1 s
    while (await client.get("/me", headers={"Cookie": f"at={new_at}"})).status != 401:
        assert time.monotonic() < deadline, "the family's access token still works"
        await asyncio.sleep(0.01)
    response = await client.post(
        "/refresh", headers={"Cookie": f"rt={new_rt}", "X-CSRF-Token": body["csrf_token"]}
    )
    assert response.status == 401
