"""Auth endpoints: thin handlers that parse, call the domain, and answer per the contract."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from services.auth.keyring import KeyRing
from services.auth.tokens import TokenPair, Tokens
from services.auth.users import Users, has_control_characters, validate_credentials
from services.common.exchange import (
    ACCESS_TOKEN_TYPE,
    GRANT_TOKEN_EXCHANGE,
    SESSION_TOKEN_TYPE,
    TOKEN_EXCHANGE_PATH,
)
from services.common.problems import ProblemError, read_json_object
from services.common.verify import (
    AccountGone,
    AuthError,
    InvalidSession,
    MissingCredential,
    Principal,
    RefreshRefused,
    Verifier,
    require_csrf,
    verifier_key,
)
from services.common.verify.cookies import (
    CookieRule,
    access_cookie,
    refresh_cookie,
    session_cookie,
)
from services.common.verify.sessions import SESSION_ID_RE

users_key = web.AppKey("users", Users)
tokens_key = web.AppKey("tokens", Tokens)
keyring_key = web.AppKey("keyring", KeyRing)

routes = web.RouteTableDef()


def _set_cookie(response: web.Response, rule: CookieRule, value: str, max_age: int | None) -> None:
    response.set_cookie(
        rule.name,
        value,
        path=rule.path,
        httponly=True,
        samesite=rule.samesite,
        secure=rule.secure,
        max_age=max_age,
    )


def _set_session_cookie(
    response: web.Response, verifier: Verifier, value: str, *, clear: bool = False
) -> None:
    _set_cookie(response, session_cookie(verifier.settings), value, 0 if clear else None)


def _set_token_cookies(response: web.Response, verifier: Verifier, pair: TokenPair | None) -> None:
    """The cookie carrier: `at` for every request, `rt` for /auth/refresh only; None clears."""
    settings = verifier.settings
    access, refresh = access_cookie(settings), refresh_cookie(settings)
    _set_cookie(response, access, pair.access_token if pair else "", pair.expires_in if pair else 0)
    _set_cookie(response, refresh, pair.refresh_token if pair else "", None if pair else 0)


def _token_response(request: web.Request, pair: TokenPair) -> web.Response:
    response = web.json_response(pair.body(), headers={"Cache-Control": "no-store"})
    if pair.csrf_token is not None:
        _set_token_cookies(response, request.app[verifier_key], pair)
    return response


@routes.post("/users")
async def create_user(request: web.Request) -> web.Response:
    username, password = validate_credentials(await read_json_object(request))
    user = await request.app[users_key].create(username, password)
    return web.json_response(user.public(), status=201)


@routes.post("/token")
async def token(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    username, password = validate_credentials(body)
    carrier = body.get("carrier", "header")
    if carrier not in ("header", "cookie"):
        raise ProblemError(422, '\'carrier\' must be "header" or "cookie".')
    user = await request.app[users_key].login(username, password)
    pair = await request.app[tokens_key].issue(user, cookie=carrier == "cookie")
    return _token_response(request, pair)


@routes.post("/refresh")
async def refresh(request: web.Request) -> web.Response:
    """A refresh token in the body, or the cookie carrier's `rt` cookie with X-CSRF-Token."""
    tokens = request.app[tokens_key]
    cookie = request.cookies.get(request.app[verifier_key].settings.refresh_cookie_name)
    if not request.can_read_body:
        if not cookie:
            raise RefreshRefused()  # no refresh token at all: a missing credential
        csrf = request.headers.get("X-CSRF-Token", "")
        return _token_response(request, await tokens.rotate(cookie, cookie_csrf=csrf))
    body = await read_json_object(request)
    token = body.get("refresh_token")
    if not isinstance(token, str) or has_control_characters(token):
        raise ProblemError(422, "Body needs a string field 'refresh_token'.")
    return _token_response(request, await tokens.rotate(token))


@routes.post("/session")
async def session(request: web.Request) -> web.Response:
    username, password = validate_credentials(await read_json_object(request))
    user = await request.app[users_key].login(username, password)
    verifier = request.app[verifier_key]
    previous = request.cookies.get(verifier.settings.cookie_name)
    assert verifier.sessions is not None  # auth always has its session store
    sid, csrf = await verifier.sessions.create(user.id, user.username, previous)
    if previous and SESSION_ID_RE.fullmatch(previous):
        # The replaced session's internal tokens (the hybrid) end with it.
        await request.app[tokens_key].revoke_session_tokens(previous)
    response = web.json_response({"csrf_token": csrf}, headers={"Cache-Control": "no-store"})
    _set_session_cookie(response, verifier, sid)
    return response


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


@routes.get("/session")
async def session_record(request: web.Request) -> web.Response:
    """The caller's own session as stored (the page's "what the server holds"); a JWT or no
    credential is a 401. Never the CSRF token: the login gave it to its owner already."""
    verifier = request.app[verifier_key]
    principal = await verifier.authenticate(request)
    if principal.mode != "session":
        raise MissingCredential()
    assert principal.session_id is not None and verifier.sessions is not None
    view = await verifier.sessions.describe(principal.session_id)
    if view is None:  # ended since its check (a logout in between)
        raise InvalidSession("session ended while it was read")
    body = {
        "sub": view.sub,
        "username": view.username,
        "created_at": _rfc3339(view.created_at),
        "idle_expires_at": _rfc3339(view.idle_expires_at),
        "absolute_expires_at": _rfc3339(view.absolute_expires_at),
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    verifier = request.app[verifier_key]
    principal = await verifier.authenticate(request)
    require_csrf(request, principal)
    # The body is checked before anything ends: a refused request changes nothing.
    refresh = await _optional_refresh_token(request)
    tokens = request.app[tokens_key]
    response = web.Response(status=204)
    if principal.mode == "session":
        assert principal.session_id is not None and verifier.sessions is not None
        await verifier.sessions.delete(principal.session_id)
        await tokens.revoke_session_tokens(principal.session_id)
        _set_session_cookie(response, verifier, "", clear=True)
        return response
    await tokens.revoke_access(principal)
    if principal.family:
        await tokens.revoke_family(principal.family)
    if refresh:
        await tokens.revoke_family_of(refresh, principal.sub)
    _set_token_cookies(response, verifier, None)
    return response


async def _optional_refresh_token(request: web.Request) -> str | None:
    if not request.can_read_body:
        return None
    body = await read_json_object(request)
    if "refresh_token" not in body:
        return None
    token = body["refresh_token"]
    if not isinstance(token, str) or has_control_characters(token):
        raise ProblemError(422, "'refresh_token' must be a string without control characters.")
    return token


@routes.get("/me")
async def me(request: web.Request) -> web.Response:
    principal: Principal = await request.app[verifier_key].authenticate(request)
    user = await request.app[users_key].get(principal.sub)
    if user is None or not user.active:
        raise AccountGone()
    return web.json_response({"sub": user.id, "username": user.username, "auth": principal.mode})


@routes.get("/.well-known/jwks.json")
async def jwks(request: web.Request) -> web.Response:
    return web.json_response(
        request.app[keyring_key].jwks(), headers={"Cache-Control": "public, max-age=300"}
    )


# RFC 8693 token exchange for the hybrid design, on auth's own address only (the gateway never
# routes it); it answers only for a live session.
def _exchange_refused(status: int, error: str, detail: str) -> ProblemError:
    return ProblemError(status, detail, extra={"error": error})  # RFC 6749 5.2 error code


@routes.post(TOKEN_EXCHANGE_PATH)
async def token_exchange(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    if body.get("grant_type") != GRANT_TOKEN_EXCHANGE:
        raise _exchange_refused(400, "unsupported_grant_type", "Only token exchange is offered.")
    subject = body.get("subject_token")
    if body.get("subject_token_type") != SESSION_TOKEN_TYPE or not isinstance(subject, str):
        raise _exchange_refused(400, "invalid_request", "The subject must be a session id.")
    try:
        session = await request.app[verifier_key].authenticate_session(subject)
    except AuthError:
        raise _exchange_refused(400, "invalid_grant", "No live session by that id.") from None
    token, lifetime = await request.app[tokens_key].exchange(session)
    return web.json_response(
        {
            "access_token": token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": lifetime,
        },
        headers={"Cache-Control": "no-store"},
    )
