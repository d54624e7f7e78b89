"""Key thumbprints (RFC 7638), JWKs and JWK sets."""

from __future__ import annotations

import pytest

from services.common import keys as keylib

RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjB"
    "ZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8"
    "KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_x"
    "BniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)


def test_thumbprint_matches_rfc7638_example() -> None:
    key = keylib.from_jwk({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"})
    assert keylib.thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_jwk_round_trip_and_small_keys_refused() -> None:
    key = keylib.generate_private_key().public_key()
    jwk = keylib.to_jwk(key)
    assert jwk["alg"] == "RS256" and jwk["use"] == "sig" and jwk["kid"] == keylib.thumbprint(key)
    assert keylib.from_jwk(jwk).public_numbers() == key.public_numbers()
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with pytest.raises(keylib.UnusableKey):
        keylib.from_jwk(keylib.to_jwk(small))


def test_parse_jwks_skips_unusable_entries() -> None:
    key = keylib.generate_private_key().public_key()
    good = keylib.to_jwk(key)
    document = {
        "keys": [good, {"kty": "oct", "k": "c2VjcmV0"}, {"kty": "RSA", "alg": "HS256"}, "junk"]
    }
    assert list(keylib.parse_jwks(document)) == [good["kid"]]
    with pytest.raises(keylib.UnusableKey):
        keylib.parse_jwks({"not": "a set"})
