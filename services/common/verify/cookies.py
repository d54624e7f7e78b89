"""The cookies that carry credentials, and their attributes: set by auth, described by the
gateway's GET /design for the page (a script never sees Set-Cookie), one definition for both."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.settings import VerifierSettings


@dataclass(frozen=True, slots=True)
class CookieRule:
    """How a credential cookie is set (every one HttpOnly)."""

    name: str
    path: str
    samesite: str
    secure: bool
    # "session": no Max-Age (ends with the browser); "expires_in": the access token's lifetime.
    lifetime: str

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "path": self.path,
            "httponly": True,
            "samesite": self.samesite,
            "secure": self.secure,
            "max_age": self.lifetime,
        }


def session_cookie(settings: VerifierSettings) -> CookieRule:
    return CookieRule(settings.cookie_name, "/", "Lax", settings.cookie_secure, "session")


def access_cookie(settings: VerifierSettings) -> CookieRule:
    return CookieRule(settings.access_cookie_name, "/", "Lax", settings.cookie_secure, "expires_in")


def refresh_cookie(settings: VerifierSettings) -> CookieRule:
    # Sent back only to the refresh route, as the gateway's clients see it.
    return CookieRule(
        settings.refresh_cookie_name, "/auth/refresh", "Strict", settings.cookie_secure, "session"
    )


def describe(settings: VerifierSettings) -> dict[str, dict[str, object]]:
    """Each credential cookie's attributes, by what it carries."""
    return {
        "session": session_cookie(settings).describe(),
        "access_token": access_cookie(settings).describe(),
        "refresh_token": refresh_cookie(settings).describe(),
    }
