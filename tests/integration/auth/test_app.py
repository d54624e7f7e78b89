"""The auth service's contract rows, against real Redis stores.

Long because it is the contract's table for auth, row by row; it shares one set of fixtures.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from services.common.verify import InvalidToken, Verifier
from tests.conftest import AUDIENCE, ISSUER, KeyMaterial
from tests.integration.conftest import (
    AuthClient,
    Stores,
    running_verifier,
    session_client,
    session_login,
    signup_and_login,
)

PROBLEM = "application/problem+json"


async def revoked_within(verifier: Verifier, token: str, seconds: float, message: str) -> None:
    """Poll the verifier until it refuses the token as revoked, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            verifier.verify_token(token)
        except InvalidToken as exc:
            assert exc.reason == "token revoked"
            return
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.01)


async def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body: dict[str, Any] = await response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in str(body)
    return body


async def test_signup_rules(auth_client: AuthClient) -> None:
    client = await auth_client()
    created = await client.post("/users", json={"username": "Alice.B-1", "password": "long enough"})
    assert created.status == 201
    body = await created.json()
    assert body["username"] == "Alice.B-1" and len(body["id"]) == 32
    await problem(
        await client.post("/users", json={"username": "alice.b-1", "password": "other pass"}), 409
    )
    for bad in (
        {"username": "ab", "password": "long enough"},
        {"username": "x" * 65, "password": "long enough"},
        {"username": "bad name", "password": "long enough"},
        {"username": "ℌello", "password": "long enough"},
        {"username": "nul\x00x", "password": "long enough"},
        {"username": "shortpw", "password": "1234567"},
        {"username": "longpw", "password": "x" * 257},
        {"username": 5, "password": "long enough"},
        {"username": "nopass"},
    ):
        await problem(await client.post("/users", json=bad), 422)
    await problem(
        await client.post(
            "/users", data=b"{not json", headers={"Content-Type": "application/json"}
        ),
        422,
    )
    await problem(
        await client.post("/users", data=b"[]", headers={"Content-Type": "application/json"}), 422
    )
    await problem(
        await client.post("/users", data=b"username=a", headers={"Content-Type": "text/plain"}), 415
    )
    await problem(await client.get("/users"), 405)


async def test_token_shape_and_verifies_with_an_independent_library(
    auth_client: AuthClient,
) -> None:
    client = await auth_client()
    body = await signup_and_login(client, "jose")
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300 and body["refresh_token"]
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    for key in jwks["keys"]:
        assert {key["kty"], key["alg"], key["use"]} == {"RSA", "RS256", "sig"}
        assert key["kid"] and key["n"] and key["e"] and "d" not in key
    token = jose_jwt.decode(body["access_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert token.header["typ"] == "at+jwt" and token.header["kid"] == jwks["keys"][0]["kid"]
    claims = token.claims
    assert (
        claims["iss"] == ISSUER
        and claims["aud"] == AUDIENCE
        and claims["exp"] - claims["iat"] == 300
    )
    assert claims["username"] == "jose" and claims["jti"] and claims["sub"]


async def test_unknown_user_and_wrong_password_look_the_same(auth_client: AuthClient) -> None:
    client = await auth_client()
    await signup_and_login(client, "carol")
    wrong = await client.post("/token", json={"username": "carol", "password": "wrong password"})
    unknown = await client.post("/token", json={"username": "nobody", "password": "wrong password"})
    assert await problem(wrong, 401) == await problem(unknown, 401)
    assert wrong.headers["WWW-Authenticate"] == unknown.headers["WWW-Authenticate"] == "Bearer"


async def test_failed_logins_lock_the_account_known_or_unknown(auth_client: AuthClient) -> None:
    client = await auth_client(LOGIN_MAX_FAILURES="3", LOGIN_WINDOW_SECONDS="120")
    await signup_and_login(client, "dave")
    for name in ("dave", "ghost"):
        for _ in range(3):
            await problem(
                await client.post("/token", json={"username": name, "password": "bad password"}),
                401,
            )
        locked = await client.post("/token", json={"username": name, "password": "bad password"})
        await problem(locked, 429)
        assert 1 <= int(locked.headers["Retry-After"]) <= 120
    # During the lockout even the right password is refused, for tokens and sessions alike.
    await problem(
        await client.post("/token", json={"username": "dave", "password": "correct horse"}), 429
    )
    await problem(
        await client.post("/session", json={"username": "dave", "password": "correct horse"}), 429
    )


async def test_refresh_rotation_and_reuse_kills_the_family(auth_client: AuthClient) -> None:
    client = await auth_client()
    first = await signup_and_login(client, "erin")
    rotated = await client.post("/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status == 200
    second = await rotated.json()
    assert (
        second["refresh_token"] != first["refresh_token"]
        and second["access_token"] != first["access_token"]
    )
    me = await client.get("/me", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert (await me.json())["username"] == "erin"
    # Replaying the spent token is refused and revokes the whole family, the newest token too.
    await problem(
        await client.post("/refresh", json={"refresh_token": first["refresh_token"]}), 401
    )
    await problem(
        await client.post("/refresh", json={"refresh_token": second["refresh_token"]}), 401
    )
    await problem(await client.post("/refresh", json={"refresh_token": "made-up"}), 401)
    await problem(await client.post("/refresh", json={"refresh_token": 5}), 422)


async def test_parallel_refresh_exactly_one_wins(auth_client: AuthClient) -> None:
    client = await auth_client()
    pair = await signup_and_login(client, "frank")
    responses = await asyncio.gather(
        *(client.post("/refresh", json={"refresh_token": pair["refresh_token"]}) for _ in range(8))
    )
    assert sorted(r.status for r in responses) == [200] + [401] * 7


async def test_session_cookie_attributes_and_fixation(
    auth_client: AuthClient, stores: Stores
) -> None:
    client = await auth_client()
    await signup_and_login(client, "grace")
    response = await client.post(
        "/session", json={"username": "grace", "password": "correct horse"}
    )
    cookie = response.headers["Set-Cookie"]
    assert (
        cookie.startswith("sid=")
        and "HttpOnly" in cookie
        and "SameSite=Lax" in cookie
        and "Path=/" in cookie
    )
    assert "Secure" not in cookie
    sid = response.cookies["sid"].value
    assert len(sid) == 43  # 32 random bytes
    client.session.cookie_jar.clear()
    # Logging in while holding a session never reuses that id, and the old one dies.
    new_sid, _ = await session_login(client, "grace", cookie=sid)
    assert new_sid != sid
    await problem(await client.get("/me", headers={"Cookie": f"sid={sid}"}), 401)
    me = await client.get("/me", headers={"Cookie": f"sid={new_sid}"})
    assert await me.json() == {
        "sub": (await me.json())["sub"],
        "username": "grace",
        "auth": "session",
    }


async def test_secure_cookie_uses_host_prefix(auth_client: AuthClient) -> None:
    client = await auth_client(COOKIE_SECURE="1")
    await signup_and_login(client, "heidi")
    response = await client.post(
        "/session", json={"username": "heidi", "password": "correct horse"}
    )
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-sid=") and "Secure" in cookie and "HttpOnly" in cookie


async def test_cookie_logout_needs_csrf_then_kills_the_session(auth_client: AuthClient) -> None:
    client, sid, csrf = await session_client(auth_client, "ivan")
    other_sid, other_csrf = await session_login(client, "ivan")
    cookie = {"Cookie": f"sid={sid}"}
    await problem(await client.post("/logout", headers=cookie), 403)
    await problem(await client.post("/logout", headers={**cookie, "X-CSRF-Token": "wrong"}), 403)
    await problem(await client.post("/logout", headers={**cookie, "X-CSRF-Token": other_csrf}), 403)
    assert (await client.get("/me", headers=cookie)).status == 200  # still alive after refusals
    out = await client.post("/logout", headers={**cookie, "X-CSRF-Token": csrf})
    assert out.status == 204
    assert out.headers["Set-Cookie"].startswith("sid=;") or 'sid=""' in out.headers["Set-Cookie"]
    assert "Max-Age=0" in out.headers["Set-Cookie"]
    await problem(await client.get("/me", headers=cookie), 401)
    assert (await client.get("/me", headers={"Cookie": f"sid={other_sid}"})).status == 200


async def test_bearer_logout_revokes_everywhere_within_a_second(
    auth_client: AuthClient, stores: Stores, key_material: KeyMaterial
) -> None:
    client = await auth_client()
    pair = await signup_and_login(client, "judy")
    async with running_verifier(stores, key_material) as other:
        token = pair["access_token"]
        assert other.verify_token(token).username == "judy"  # now cached there
        out = await client.post(
            "/logout",
            headers={"Authorization": f"Bearer {token}"},
            json={"refresh_token": pair["refresh_token"]},
        )
        assert out.status == 204
        await revoked_within(other, token, 1.0, "revocation took over 1 s to arrive")
        await problem(await client.get("/me", headers={"Authorization": f"Bearer {token}"}), 401)
        await problem(
            await client.post("/refresh", json={"refresh_token": pair["refresh_token"]}), 401
        )
    # A verifier that starts later loads the revocation from the store.
    async with running_verifier(stores, key_material) as late:
        with pytest.raises(InvalidToken):
            late.verify_token(token)


async def test_me_requires_a_credential(auth_client: AuthClient) -> None:
    client = await auth_client()
    missing = await client.get("/me")
    await problem(missing, 401)
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    bad = await client.get("/me", headers={"Authorization": "Bearer nonsense"})
    await problem(bad, 401)
    assert bad.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    await problem(await client.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401)
    await problem(await client.get("/me", headers={"Cookie": "sid=forged"}), 401)
    await problem(await client.get("/me", headers={"Cookie": "sid=" + "A" * 43}), 401)


async def test_session_store_stopped_gives_503_fast(
    auth_client: AuthClient, stores: Stores
) -> None:
    client = await auth_client()
    pair = await signup_and_login(client, "karl")
    sid, _ = await session_login(client, "karl")
    stores.sessions.stop()
    started = time.monotonic()
    response = await client.get("/me", headers={"Cookie": f"sid={sid}"})
    assert time.monotonic() - started < 1.0
    body = await problem(response, 503)
    assert "unavailable" in body["detail"]
    # Bearer tokens do not need the session store.
    ok = await client.get("/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert ok.status == 200


async def test_session_store_stalled_gives_503_fast(
    auth_client: AuthClient, stores: Stores
) -> None:
    client, sid, _ = await session_client(auth_client, "lena")
    stall = subprocess.Popen(
        ["redis-cli", "-p", str(stores.sessions.port), "DEBUG", "SLEEP", "2"],
        stdout=subprocess.DEVNULL,
    )
    try:
        # Wait until the stall is really in effect: a PING no longer answers quickly.
        from devstack.stores import redis_ping

        deadline = time.monotonic() + 2
        while redis_ping(stores.sessions.port) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        response = await client.get("/me", headers={"Cookie": f"sid={sid}"})
        assert time.monotonic() - started < 1.0
        await problem(response, 503)
    finally:
        stall.wait(10)


async def test_idle_timeout_expires_an_unused_session(
    auth_client: AuthClient, stores: Stores
) -> None:
    client, sid, _ = await session_client(auth_client, "mallory", SESSION_IDLE_SECONDS="1")
    assert (await client.get("/me", headers={"Cookie": f"sid={sid}"})).status == 200
    # Leave the session alone and watch the store: the idle timeout is the key's TTL.
    import redis

    store = redis.Redis(port=stores.sessions.port, socket_timeout=1)
    deadline = time.monotonic() + 5
    while store.exists(f"session:{sid}"):
        assert time.monotonic() < deadline, "idle session never expired"
        await asyncio.sleep(0.05)
    store.close()
    await problem(await client.get("/me", headers={"Cookie": f"sid={sid}"}), 401)


async def test_idle_timeout_slides_while_the_session_is_used(
    auth_client: AuthClient, stores: Stores
) -> None:
    """A used session's TTL is pushed back to the idle timeout (at most once per touch)."""
    from redis.asyncio import Redis

    now = [time.time()]
    client, sid, _ = await session_client(
        auth_client, "mike", clock=lambda: now[0], SESSION_IDLE_SECONDS="20"
    )
    store = Redis(port=stores.sessions.port, socket_timeout=1)
    try:
        for _ in range(3):
            # As if 19.5 s had passed unused: the key has half a second left...
            await store.pexpire(f"session:{sid}", 500)
            now[0] += 19.5
            assert (await client.get("/me", headers={"Cookie": f"sid={sid}"})).status == 200
            # ...and the request slid it back to the whole idle timeout.
            deadline = time.monotonic() + 2
            while await store.pttl(f"session:{sid}") <= 500:
                assert time.monotonic() < deadline, "the idle timeout did not slide"
                await asyncio.sleep(0.01)
            assert 19_000 < await store.pttl(f"session:{sid}") <= 20_000
    finally:
        await store.aclose()


async def test_absolute_timeout_ends_even_an_active_session(auth_client: AuthClient) -> None:
    now = [time.time()]
    client = await auth_client(
        clock=lambda: now[0], SESSION_IDLE_SECONDS="1800", SESSION_ABSOLUTE_SECONDS="7200"
    )
    await signup_and_login(client, "niaj")
    sid, _ = await session_login(client, "niaj")
    for _ in range(4):  # used every half hour: the idle timeout never bites
        now[0] += 1799
        assert (await client.get("/me", headers={"Cookie": f"sid={sid}"})).status == 200
    now[0] += 7200 - 4 * 1799  # exactly the absolute timeout after the login
    await problem(await client.get("/me", headers={"Cookie": f"sid={sid}"}), 401)


async def test_health_and_metrics(auth_client: AuthClient) -> None:
    client: TestClient[Any, Any] = await auth_client()
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    await signup_and_login(client, "olivia")
    metrics = await (await client.get("/metrics")).text()
    assert (
        'http_requests_total{auth_mode="none",method="POST",route="/token",service="auth",status="200"}'
        in metrics
    )
    assert "process_cpu_seconds_total" in metrics
    assert (
        'store_calls_total{op="issue_refresh",result="ok",service="auth",store="data_store"}'
        in metrics
    )


async def test_rotation_publishes_every_active_key(
    aiohttp_client: Any, stores: Stores, tmp_path: Any, make_token: Any, key_material: KeyMaterial
) -> None:
    """A key rotating out (public-*.pem beside the signing key) stays in the JWKS and verifies."""
    import shutil

    from services.auth.app import create_app
    from services.auth.settings import Settings

    keys = tmp_path / "keys"
    shutil.copytree(key_material.directory, tmp_path / "old")
    keys.mkdir()
    (keys / "public-previous.pem").write_bytes((tmp_path / "old" / "public.pem").read_bytes())
    settings = Settings.from_env({**stores.env(key_material), "KEYS_DIR": str(keys)})
    client = await aiohttp_client(create_app(settings))
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    kids = {k["kid"] for k in jwks["keys"]}
    assert len(kids) == 2 and key_material.kid in kids  # new signing key + the previous one
    # A token signed by the previous key still verifies; a new login is signed by the new key.
    response = await client.get(
        "/me", headers={"Authorization": f"Bearer {make_token(sub='nobody')}"}
    )
    assert response.status == 401  # verified, but no such account: the account check answers
    body = await response.json()
    assert body["detail"] == "Account not found or disabled."
    pair = await signup_and_login(client, "rotor")
    from jwt import get_unverified_header

    assert get_unverified_header(pair["access_token"])["kid"] in kids - {key_material.kid}


async def test_revocation_list_reloads_after_its_stream_reconnects(
    stores: Stores, key_material: KeyMaterial, make_token: Any
) -> None:
    """A revocation missed while the subscription was down is picked up on reconnect."""
    import redis as sync_redis

    from services.common.keyspace import REVOKED_SET

    async with running_verifier(stores, key_material) as verifier:
        token = make_token(jti="missed-while-away")
        assert verifier.verify_token(token).jti == "missed-while-away"
        admin = sync_redis.Redis(port=stores.sessions.port, socket_timeout=2)
        durable = sync_redis.Redis(port=stores.data.port, socket_timeout=2)
        # Cut the subscription, and record a revocation with no message, as if it was missed.
        durable.zadd(REVOKED_SET, {"missed-while-away": time.time() + 300})
        durable.close()
        assert admin.client_kill_filter(_type="pubsub") >= 1
        await revoked_within(verifier, token, 5, "the revocation list never reloaded")
        admin.close()
