"""Credential verification for every service: RS256 access tokens and sessions -> Principal.

verifier   the entry point, `await Verifier.authenticate(request)`
jwt        token rules and the verified-token cache (CPU only)
keystore   key files, JWKS refresh, unknown-kid refetch
revocation the pushed denylist, publish side and follow side
sessions   the session record and its life (create, read, slide, delete)
csrf       the double-submit check for cookie credentials
timing     each check's Server-Timing entry (SERVER_TIMING=1)
errors     the AuthError tree: every 401 any service answers
"""

from services.common.verify.csrf import carried_by_cookie, check_csrf, csrf_digest, require_csrf
from services.common.verify.errors import (
    ACCOUNT_GONE,
    AccountGone,
    AuthError,
    InvalidSession,
    InvalidToken,
    KeysUnavailable,
    LoginRefused,
    MissingCredential,
    RefreshRefused,
    RevocationsUnavailable,
    UnknownKey,
)
from services.common.verify.principal import Principal
from services.common.verify.verifier import Verifier, verifier_key

__all__ = [
    "ACCOUNT_GONE",
    "AccountGone",
    "AuthError",
    "InvalidSession",
    "InvalidToken",
    "KeysUnavailable",
    "LoginRefused",
    "MissingCredential",
    "Principal",
    "RefreshRefused",
    "RevocationsUnavailable",
    "UnknownKey",
    "Verifier",
    "carried_by_cookie",
    "check_csrf",
    "csrf_digest",
    "require_csrf",
    "verifier_key",
]
