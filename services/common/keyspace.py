"""Every Redis key and channel name the services use, defined once.

Lua scripts never spell a key: they receive full names as KEYS, or a prefix as ARGV when the
key depends on data read inside the script.
"""

from __future__ import annotations

import hashlib

# -- session store (no persistence) ---------------------------------------------------------

SESSION_PREFIX = "session:"
REVOKED_CHANNEL = "revoked:jti"  # pub/sub: batches of "<jti> <exp>" lines (verify.revocation)
SESSIONS_CHANNEL = "sessions:ended"  # pub/sub: a session's fingerprint (verify.sessions)
LOGIN_FAILURES_PREFIX = "loginfail:"


def session_key(session_id: str) -> str:
    return SESSION_PREFIX + session_id


def session_tokens_key(session_id: str) -> str:
    """Sorted set of the internal tokens (jti scored by exp) minted for one session."""
    return f"session-jtis:{session_id}"


def login_failures_key(username: str) -> str:
    """Per account name, known or not, case-folded like usernames are."""
    return LOGIN_FAILURES_PREFIX + username.lower()


# -- data store (AOF, fsync always) ---------------------------------------------------------

REVOKED_SET = "revoked:jti"  # sorted set: every revoked jti, scored by its exp
ORDER_PREFIX = "order:"
REFRESH_FAMILY_PREFIX = "rfamily:"
FAMILY_TOKENS_SUFFIX = ":jtis"


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def username_key(username: str) -> str:
    return f"username:{username.lower()}"


def refresh_key(token: str) -> str:
    # Only a hash is stored: a copy of the data store does not yield usable refresh tokens.
    return "refresh:" + hashlib.sha256(token.encode()).hexdigest()


def family_key(family: str) -> str:
    return REFRESH_FAMILY_PREFIX + family


def family_tokens_key(family: str) -> str:
    """Sorted set of the access-token jtis issued in a family, scored by their exp."""
    return family_key(family) + FAMILY_TOKENS_SUFFIX


def order_key(order_id: str) -> str:
    return ORDER_PREFIX + order_id


def owner_index(owner: str) -> str:
    return f"orders:{owner}"


def idempotency_key(owner: str, key: str) -> str:
    return f"idem:{owner}:{hashlib.sha256(key.encode()).hexdigest()}"
