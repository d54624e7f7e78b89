"""CSRF for cookie credentials: unsafe requests must echo the session's token."""

from __future__ import annotations

import hmac

from aiohttp import web

from services.common.problems import ProblemError
from services.common.verify.principal import Principal

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def require_csrf(request: web.Request, principal: Principal) -> None:
    """Cookie-authenticated unsafe requests must echo the session's CSRF token (else 403)."""
    if principal.mode != "session" or request.method in SAFE_METHODS:
        return
    sent = request.headers.get("X-CSRF-Token", "")
    if not principal.csrf or not hmac.compare_digest(sent.encode(), principal.csrf.encode()):
        raise ProblemError(403, "Missing or wrong X-CSRF-Token for this session.")
