"""Why a credential was refused: one root, AuthError, for every 401 any service answers.

Clients see an opaque detail and a Bearer challenge; the precise reason goes to the log.
"""

from __future__ import annotations

from services.common.problems import ProblemError

# What auth answers for a valid credential whose account is gone; orders passes it on.
ACCOUNT_GONE = "Account not found or disabled."


class AuthError(ProblemError):
    """401 with `WWW-Authenticate: Bearer` (`error="invalid_token"` when a token was sent)."""

    def __init__(self, reason: str, *, token_sent: bool = False, detail: str | None = None) -> None:
        challenge = 'Bearer error="invalid_token"' if token_sent else "Bearer"
        if detail is None:
            detail = "Invalid or expired credentials." if token_sent else "Authentication required."
        super().__init__(401, detail, headers={"WWW-Authenticate": challenge})
        self.reason = reason


class MissingCredential(AuthError):
    """No bearer token and no session cookie."""

    def __init__(self) -> None:
        super().__init__("no credential")


class InvalidToken(AuthError):
    """The bearer token broke a verification rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, token_sent=True)


class UnknownKey(InvalidToken):
    """The token's kid is not among the loaded keys (a refetch may still find it)."""

    def __init__(self, kid: str) -> None:
        super().__init__("unknown kid")
        self.kid = kid


class InvalidSession(AuthError):
    """The session cookie names no live session."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)


class LoginRefused(AuthError):
    """Unknown username or wrong password (one answer for both)."""

    def __init__(self) -> None:
        super().__init__("bad login", detail="Unknown username or wrong password.")


class RefreshRefused(AuthError):
    """The refresh token is unknown, expired, spent or from a dead family."""

    def __init__(self) -> None:
        super().__init__("bad refresh token", detail="Invalid refresh token.")


class AccountGone(AuthError):
    """The credential verified, but its account no longer exists or is disabled."""

    def __init__(self) -> None:
        super().__init__("account gone", detail=ACCOUNT_GONE)


class RevocationsUnavailable(ProblemError):
    """The revocation list (JWT_REVOCATION=push) has not been loaded yet: a token cannot be
    judged against it, so it is neither accepted nor refused as revoked: 503, not 200 or 401."""

    def __init__(self) -> None:
        super().__init__(
            503, "The token revocation list is not loaded yet.", headers={"Retry-After": "1"}
        )


class KeysUnavailable(ProblemError):
    """No verification key has been loaded yet (JWKS never reached): 503, not 401."""

    def __init__(self) -> None:
        super().__init__(
            503, "Token verification keys are not loaded yet.", headers={"Retry-After": "1"}
        )
