"""CSRF for cookie credentials: unsafe requests must carry the credential's CSRF token.

For a session the token is stored in the session record (compared as is). For a JWT carried by
the `at` cookie the token is bound to the JWT itself, whose `csrf` claim is the token's digest:
a signed double submit, with no server state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from aiohttp import web

from services.common.problems import ProblemError
from services.common.verify.principal import Principal

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_digest(token: str) -> str:
    """The `csrf` claim of a cookie-carried access token: base64url SHA-256 of its CSRF token."""
    digest = hashlib.sha256(token.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def carried_by_cookie(request: web.Request) -> bool:
    """The Authorization header judges a request alone; without it a cookie did."""
    return "Authorization" not in request.headers


def require_csrf(request: web.Request, principal: Principal) -> None:
    """Cookie-authenticated unsafe requests must echo the credential's CSRF token (else 403)."""
    check_csrf(request.method, request.headers, principal)


def check_csrf(method: str, headers: Mapping[str, str], principal: Principal) -> None:
    """require_csrf on a request's method and (case-insensitive) headers."""
    if method in SAFE_METHODS or "Authorization" in headers:
        return
    sent = headers.get("X-CSRF-Token", "")
    if principal.mode == "jwt":
        sent = csrf_digest(sent) if sent else ""
    if not principal.csrf or not hmac.compare_digest(sent.encode(), principal.csrf.encode()):
        raise ProblemError(403, "Missing or wrong X-CSRF-Token for this credential.")
