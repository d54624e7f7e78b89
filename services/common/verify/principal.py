"""Who made a request, and with what credential: what every verification returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made the request, and with what."""

    sub: str
    username: str
    mode: str  # "jwt" or "session"
    jti: str | None = None
    exp: int | None = None
    family: str | None = None  # refresh-token family of a JWT (its `sid` claim)
    session_id: str | None = None
    # The session's CSRF token, or for a JWT the digest of its own (its `csrf` claim).
    csrf: str | None = None
    internal: bool = False  # a JWT of the internal audience (the hybrid's, minted for a session)
