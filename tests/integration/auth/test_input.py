"""Auth's input rules: odd text in credentials and tokens is a 422 and stores nothing."""

from __future__ import annotations

import pytest

from tests.integration.conftest import AuthClient, session_login, signup_and_login

PROBLEM = "application/problem+json"
ODD_TEXT = [
    '"\\ud800"',  # a lone surrogate, escaped
    '"\\udfff tail"',
    '"ctl\\u0007char"',
    '"tab\\there"',
    '"nul\\u0000x"',
    '"del\\u007f"',
]


async def _problem(response: object, status: int) -> None:
    assert response.status == status, await response.text()  # type: ignore[attr-defined]
    assert response.content_type == PROBLEM  # type: ignore[attr-defined]


@pytest.mark.parametrize("odd", ODD_TEXT)
async def test_credentials_with_odd_text_are_422(auth_client: AuthClient, odd: str) -> None:
    client = await auth_client()
    await signup_and_login(client, "oddity")
    headers = {"Content-Type": "application/json"}
    for path in ("/users", "/token", "/session"):
        for body in (
            f'{{"username": {odd}, "password": "correct horse"}}',
            f'{{"username": "oddity", "password": {odd}}}',
        ):
            await _problem(await client.post(path, data=body.encode(), headers=headers), 422)
    for path in ("/refresh", "/logout"):
        body = f'{{"refresh_token": {odd}}}'
        response = await client.post(path, data=body.encode(), headers=headers)
        await _problem(response, 422 if path == "/refresh" else 401)
    # Nothing was counted as a failed login: five wrong answers would have locked the account.
    response = await client.post("/token", json={"username": "oddity", "password": "correct horse"})
    assert response.status == 200


async def test_a_refused_logout_body_ends_nothing(auth_client: AuthClient) -> None:
    """Session or JWT, a logout whose body breaks the rules is 422 and the credential lives."""
    client = await auth_client()
    pair = await signup_and_login(client, "stayer")
    sid, csrf = await session_login(client, "stayer")
    credentials = (
        {"Cookie": f"sid={sid}", "X-CSRF-Token": csrf},
        {"Authorization": f"Bearer {pair['access_token']}"},
    )
    for headers in credentials:
        for body in (b"not json", b"[]", b'{"refresh_token": 5}', b'{"refresh_token": null}'):
            response = await client.post(
                "/logout", data=body, headers={**headers, "Content-Type": "application/json"}
            )
            await _problem(response, 422)
            assert (await client.get("/me", headers=headers)).status == 200


async def test_refresh_with_no_token_at_all_is_401(auth_client: AuthClient) -> None:
    client = await auth_client()
    response = await client.post("/refresh")
    await _problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
