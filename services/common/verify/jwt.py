"""Access-token rules (RFC 8725, RFC 9068): header checks, decode, and the verified-token cache.

CPU only, no I/O: keys come from a KeyStore, time from the caller's clock.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common.settings import VerifierSettings
from services.common.verify.errors import InvalidToken, UnknownKey
from services.common.verify.principal import Principal

MAX_TOKEN_BYTES = 8192
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "jti")
ACCEPTED_TYP = frozenset({"at+jwt", "application/at+jwt"})


def _b64url_json(segment: str) -> object:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        return None


def decode_access_token(
    token: str, keys: Mapping[str, rsa.RSAPublicKey], settings: VerifierSettings, now: float
) -> Principal:
    """Verify one access token against the loaded keys; raise InvalidToken (or UnknownKey)."""
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidToken("token larger than 8 KiB")
    header_segment, dot, _ = token.partition(".")
    header = _b64url_json(header_segment) if dot else None
    if not isinstance(header, dict):
        raise InvalidToken("malformed token header")
    if header.get("alg") != "RS256":
        raise InvalidToken("algorithm is not RS256")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYP:
        raise InvalidToken("typ is not at+jwt")
    if "crit" in header:
        raise InvalidToken("crit header present")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise InvalidToken("kid missing")
    key = keys.get(kid)
    if key is None:
        raise UnknownKey(kid)
    leeway = settings.leeway_seconds
    try:
        claims = jwt.decode(
            token,
            key=key,
            algorithms=["RS256"],
            issuer=settings.issuer,
            leeway=leeway,
            # Time claims and the audience are checked below: time against our clock, so tests
            # can move it; the audience exactly, against one or two accepted values.
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_aud": False,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"{type(exc).__name__}: {exc}") from None
    aud = claims["aud"]
    if not isinstance(aud, str) or not (
        aud == settings.audience or (settings.accept_internal and aud == settings.internal_audience)
    ):
        raise InvalidToken("InvalidAudienceError: audience is not accepted here")
    sub, jti, exp, iat = claims["sub"], claims["jti"], claims["exp"], claims["iat"]
    if not isinstance(sub, str) or not sub or not isinstance(jti, str) or not jti:
        raise InvalidToken("sub and jti must be non-empty strings")
    nbf = claims.get("nbf", iat)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, iat, nbf)):
        raise InvalidToken("exp, iat and nbf must be integers")
    if exp <= now - leeway:
        raise InvalidToken("ExpiredSignatureError: token has expired")
    if iat > now + leeway or nbf > now + leeway:
        raise InvalidToken("ImmatureSignatureError: token is not valid yet")
    username = claims.get("username")
    family = claims.get("sid")
    csrf = claims.get("csrf")  # only in tokens issued for the cookie carrier
    return Principal(
        sub=sub,
        username=username if isinstance(username, str) else "",
        mode="jwt",
        jti=jti,
        exp=exp,
        family=family if isinstance(family, str) else None,
        csrf=csrf if isinstance(csrf, str) else None,
        internal=aud != settings.audience,
    )


class TokenCache:
    """Verified tokens by their text, bounded; an entry never outlives the token's exp."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: dict[str, Principal] = {}

    def get(self, token: str, now: float) -> Principal | None:
        cached = self._entries.get(token)
        if cached is None:
            return None
        assert cached.exp is not None
        if now < cached.exp:
            return cached
        del self._entries[token]
        return None

    def put(self, token: str, principal: Principal, now: float) -> None:
        if not self.size or principal.exp is None or now >= principal.exp:
            return
        if len(self._entries) >= self.size:
            # Drop the oldest entry: dicts keep insertion order.
            self._entries.pop(next(iter(self._entries)))
        self._entries[token] = principal
