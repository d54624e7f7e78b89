"""GET /auth/session: the caller's own session record as stored, and nothing else; and the
auth service's own Server-Timing entry (SERVER_TIMING=1) for the check it made."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.common.verify import timing
from tests.integration.conftest import AuthClient, session_login, signup_and_login

FIELDS = {"sub", "username", "created_at", "idle_expires_at", "absolute_expires_at"}


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


async def test_each_owner_sees_only_their_own_record(auth_client: AuthClient) -> None:
    now = [1_900_000_000.0]
    client = await auth_client(
        clock=lambda: now[0], SESSION_IDLE_SECONDS="600", SESSION_ABSOLUTE_SECONDS="3600"
    )
    records: dict[str, Any] = {}
    for name in ("alice_rec", "bob_rec"):
        user = await signup_and_login(client, name)
        sid, csrf = await session_login(client, name)
        response = await client.get("/session", headers={"Cookie": f"sid={sid}"})
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        raw = await response.text()
        body = await response.json()
        assert set(body) == FIELDS  # the contract's fields, nothing more
        assert csrf not in raw and sid not in raw  # no secret of the login comes back
        assert body["username"] == name and body["sub"] != ""
        assert seconds(body["created_at"]) == now[0]
        assert seconds(body["absolute_expires_at"]) == now[0] + 3600
        # The idle end is the store's TTL from now: at most the idle timeout, and not long ago.
        assert now[0] + 590 <= seconds(body["idle_expires_at"]) <= now[0] + 600
        assert user["access_token"]  # the same account, logged in both ways
        records[name] = body
    assert records["alice_rec"]["sub"] != records["bob_rec"]["sub"]


async def test_anything_but_a_live_session_is_a_401(auth_client: AuthClient) -> None:
    client = await auth_client()
    tokens = await signup_and_login(client, "carol_rec")
    sid, csrf = await session_login(client, "carol_rec")
    for headers in (
        {},  # no credential
        {"Authorization": f"Bearer {tokens['access_token']}"},  # a JWT is not a session
        {"Cookie": "sid=" + "A" * 43},  # well-formed, unknown
        {"Cookie": "sid=not-a-session"},
    ):
        response = await client.get("/session", headers=headers)
        assert response.status == 401, headers
        assert response.content_type == "application/problem+json"
        assert "username" not in await response.text()
    logout = await client.post("/logout", headers={"Cookie": f"sid={sid}", "X-CSRF-Token": csrf})
    assert logout.status == 204
    response = await client.get("/session", headers={"Cookie": f"sid={sid}"})
    assert response.status == 401


async def test_auth_adds_its_own_entry_only_when_asked(auth_client: AuthClient) -> None:
    on = await auth_client(SERVER_TIMING="1")
    await signup_and_login(on, "dan_rec")
    sid, _ = await session_login(on, "dan_rec")
    response = await on.get("/me", headers={"Cookie": f"sid={sid}"})
    assert response.status == 200
    (entry,) = timing.parse(response.headers.getall(timing.HEADER))
    assert entry.service == "auth"
    assert entry.desc == {
        "credential": "session",
        "carrier": "cookie",
        "cache": "off",
        "store": "1",
        "result": "ok",
    }
    assert entry.dur_ms >= 0
    refused = await on.get("/me", headers={"Authorization": "Bearer nonsense"})
    (entry,) = timing.parse(refused.headers.getall(timing.HEADER))
    assert refused.status == 401 and entry.desc["result"] == "refused"
    # Routes that check no credential carry no entry.
    assert timing.HEADER not in (await on.get("/.well-known/jwks.json")).headers

    off = await auth_client()
    response = await off.get("/me", headers={"Cookie": f"sid={sid}"})
    assert response.status == 200 and timing.HEADER not in response.headers
