"""Sessions (forged ids, fixation, replay, timeouts, CSRF, cookie flags) and refresh tokens."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator

import pytest

from devstack.stack import Stack
from tests.stackutil import Api, running


@pytest.mark.parametrize(
    "sid",
    [
        secrets.token_urlsafe(32),  # well-formed, unknown
        "A" * 43,
        "short",
        "x" * 5000,
        "../session:admin",
        "' OR 1=1 --",
        "%00%00",
        "s" * 42 + "*",
    ],
)
async def test_forged_session_ids_are_refused_and_change_nothing(
    api: Api, sid: str, store_sizes: Callable[[], tuple[int, int]]
) -> None:
    before = store_sizes()
    for method, path, body in (
        ("GET", "/orders", None),
        ("POST", "/orders", {"item": "x", "quantity": 1}),
        ("GET", "/auth/me", None),
        ("POST", "/auth/logout", None),
    ):
        response, problem = await api.call(
            method, path, json=body, headers={"Cookie": f"sid={sid}", "X-CSRF-Token": "t"}
        )
        assert response.status == 401, (method, path, problem)
        assert problem["status"] == 401
    assert store_sizes() == before


async def test_fixation_a_planted_session_id_is_never_adopted(api: Api) -> None:
    username, _ = await api.signup()
    planted = secrets.token_urlsafe(32)
    response, _ = await api.call(
        "POST",
        "/auth/session",
        json={"username": username, "password": "correct horse"},
        headers={"Cookie": f"sid={planted}"},
    )
    issued = response.cookies["sid"].value
    assert issued != planted
    response, _ = await api.call("GET", "/orders", headers={"Cookie": f"sid={planted}"})
    assert response.status == 401


async def test_every_login_gets_a_new_session_and_logout_kills_replay(api: Api) -> None:
    username, _ = await api.signup()
    first = await api.session_login(username)
    second = await api.session_login(username)
    assert first["Cookie"] != second["Cookie"] and first["X-CSRF-Token"] != second["X-CSRF-Token"]
    out, _ = await api.call("POST", "/auth/logout", headers=first)
    assert out.status == 204
    for _ in range(3):  # replay after logout, through every route
        for path in ("/orders", "/auth/me"):
            response, _ = await api.call("GET", path, headers=first)
            assert response.status == 401
    response, _ = await api.call("GET", "/orders", headers=second)
    assert response.status == 200


async def test_csrf_missing_wrong_or_from_another_session(api: Api) -> None:
    username, _ = await api.signup()
    mine = await api.session_login(username)
    other_name, _ = await api.signup()
    theirs = await api.session_login(other_name)
    same_user_other_session = await api.session_login(username)
    for token in (
        None,
        "",
        "wrong",
        theirs["X-CSRF-Token"],
        same_user_other_session["X-CSRF-Token"],
        mine["X-CSRF-Token"][:-1],
        mine["X-CSRF-Token"] + "x",
    ):
        headers = {"Cookie": mine["Cookie"]}
        if token is not None:
            headers["X-CSRF-Token"] = token
        response, problem = await api.call(
            "POST", "/orders", headers=headers, json={"item": "x", "quantity": 1}
        )
        assert response.status == 403 and problem["status"] == 403
    _, orders = await api.call("GET", "/orders", headers={"Cookie": mine["Cookie"]})
    assert orders == {"orders": []}


async def test_cookie_attributes_through_the_gateway(api: Api) -> None:
    username, _ = await api.signup()
    response, _ = await api.call(
        "POST", "/auth/session", json={"username": username, "password": "correct horse"}
    )
    cookie = response.headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path"} <= attributes
    assert "domain" not in attributes and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert response.headers["Cache-Control"] == "no-store"


async def test_refresh_reuse_parallel_and_after_logout(api: Api) -> None:
    username, _ = await api.signup()
    creds = {"username": username, "password": "correct horse"}
    _, pair = await api.call("POST", "/auth/token", json=creds)
    # Parallel use of one refresh token: exactly one wins.
    results = await asyncio.gather(
        *(
            api.call("POST", "/auth/refresh", json={"refresh_token": pair["refresh_token"]})
            for _ in range(10)
        )
    )
    statuses = sorted(r.status for r, _ in results)
    assert statuses == [200] + [401] * 9
    winner = next(body for r, body in results if r.status == 200)
    # The losers were reuses: the family is dead, the winner's token included.
    response, _ = await api.call(
        "POST", "/auth/refresh", json={"refresh_token": winner["refresh_token"]}
    )
    assert response.status == 401

    _, pair = await api.call("POST", "/auth/token", json=creds)
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    out, _ = await api.call("POST", "/auth/logout", headers=bearer)
    assert out.status == 204
    response, _ = await api.call(
        "POST", "/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert response.status == 401  # logout revoked the access token's family


async def test_logout_of_someone_elses_refresh_token_is_ignored(api: Api) -> None:
    victim, _ = await api.signup()
    attacker, _ = await api.signup()
    _, victim_pair = await api.call(
        "POST", "/auth/token", json={"username": victim, "password": "correct horse"}
    )
    attacker_auth = await api.jwt_login(attacker)
    out, _ = await api.call(
        "POST",
        "/auth/logout",
        headers=attacker_auth,
        json={"refresh_token": victim_pair["refresh_token"]},
    )
    assert out.status == 204
    response, _ = await api.call(
        "POST", "/auth/refresh", json={"refresh_token": victim_pair["refresh_token"]}
    )
    assert response.status == 200  # the victim's family survived


@pytest.fixture(scope="module")
def short_sessions(
    tmp_path_factory: pytest.TempPathFactory, redis_available: None
) -> Iterator[Stack]:
    yield from running(
        tmp_path_factory.mktemp("short-sessions"),
        SESSION_IDLE_SECONDS="2",
        SESSION_ABSOLUTE_SECONDS="5",
    )


async def test_idle_and_absolute_timeouts_on_the_stack(api: Api, short_sessions: Stack) -> None:
    short = Api(api.http, short_sessions.gateway_url)
    username, _ = await short.signup()
    idle = await short.session_login(username)
    active = await short.session_login(username)
    started = time.monotonic()
    idle_expired_at = None
    while True:
        response, _ = await short.call("GET", "/orders", headers=active)
        elapsed = time.monotonic() - started
        if response.status == 401:
            break
        assert response.status == 200
        if idle_expired_at is None and elapsed > 2.5:
            # Untouched since login for longer than the idle timeout: it must be gone.
            probe, _ = await short.call("GET", "/auth/me", headers=idle)
            assert probe.status == 401
            idle_expired_at = elapsed
        assert elapsed < 8, "the absolute timeout never ended the active session"
        await asyncio.sleep(0.2)
    # The active session outlived the idle timeout (it kept sliding) but not the absolute one.
    assert elapsed >= 4.5
    assert idle_expired_at is not None and idle_expired_at < 4.0


async def test_refresh_reuse_also_revokes_the_familys_access_tokens(api: Api) -> None:
    username, _ = await api.signup()
    _, first = await api.call(
        "POST", "/auth/token", json={"username": username, "password": "correct horse"}
    )
    _, second = await api.call(
        "POST", "/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    _, other_family = await api.call(
        "POST", "/auth/token", json={"username": username, "password": "correct horse"}
    )
    tokens = [first["access_token"], second["access_token"]]
    for token in [*tokens, other_family["access_token"]]:
        response, _ = await api.call("GET", "/orders", headers={"Authorization": f"Bearer {token}"})
        assert response.status == 200
    # An attacker replays the stolen, already spent refresh token.
    replay, _ = await api.call(
        "POST", "/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert replay.status == 401
    started = time.monotonic()
    pending = list(tokens)
    while pending:
        assert time.monotonic() - started < 1.0, "the family's access tokens still work after 1 s"
        still = []
        for token in pending:
            response, _ = await api.call(
                "GET", "/orders", headers={"Authorization": f"Bearer {token}"}
            )
            if response.status != 401:
                still.append(token)
        pending = still
        await asyncio.sleep(0.01)
    # Another login of the same user (another family) is untouched.
    response, _ = await api.call(
        "GET", "/orders", headers={"Authorization": f"Bearer {other_family['access_token']}"}
    )
    assert response.status == 200
