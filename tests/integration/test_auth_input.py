"""Auth's input rules: odd text in credentials and tokens is a 422 and stores nothing."""

from __future__ import annotations

import pytest

from tests.integration.conftest import AuthClient, signup_and_login

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
