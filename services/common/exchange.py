"""The hybrid design's token exchange (RFC 8693) on the wire: what the gateway sends to auth's
own address and what auth answers. Defined once; auth serves it, the gateway calls it."""

from __future__ import annotations

# Not a contract route: on auth's own address only, never forwarded by the gateway.
TOKEN_EXCHANGE_PATH = "/internal/token-exchange"  # noqa: S105 - a path, not a secret
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
SESSION_TOKEN_TYPE = "urn:authscale:params:oauth:token-type:session"  # noqa: S105
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105


def request_body(session_id: str) -> dict[str, str]:
    """Exchange this session (the subject) for an internal access token."""
    return {
        "grant_type": GRANT_TOKEN_EXCHANGE,
        "subject_token": session_id,
        "subject_token_type": SESSION_TOKEN_TYPE,
    }
