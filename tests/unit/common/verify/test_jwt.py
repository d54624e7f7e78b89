"""Every JWT verification rule of the contract, on the Verifier alone (no I/O)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from services.common import keys as keylib
from services.common.observability import Metrics
from services.common.settings import VerifierSettings
from services.common.verify import InvalidToken, Verifier
from tests.conftest import AUDIENCE, ISSUER, KeyMaterial

Token = Callable[..., str]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )


@pytest.fixture
def clock() -> list[float]:
    return [time.time()]


@pytest.fixture
def verifier(key_material: KeyMaterial, clock: list[float]) -> Verifier:
    settings = VerifierSettings(issuer=ISSUER, audience=AUDIENCE, revocation="off")
    return Verifier(
        settings,
        Metrics("test"),
        None,
        clock=lambda: clock[0],
        static_keys={key_material.kid: key_material.private.public_key()},
    )


def refused(verifier: Verifier, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        verifier.verify_token(token)
    assert info.value.status == 401
    assert info.value.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    return info.value.reason


def test_valid_token_gives_principal(verifier: Verifier, make_token: Token) -> None:
    principal = verifier.verify_token(make_token(sub="u-42", username="bob", sid="fam"))
    assert (principal.sub, principal.username, principal.mode, principal.family) == (
        "u-42",
        "bob",
        "jwt",
        "fam",
    )


def test_cache_hit_returns_same_principal_and_never_outlives_exp(
    verifier: Verifier, make_token: Token, clock: list[float]
) -> None:
    now = int(clock[0])
    token = make_token(now=now, exp=now + 10)
    first = verifier.verify_token(token)
    assert verifier.verify_token(token) is first
    clock[0] = now + 10 + 31  # past exp and past the leeway
    assert "Expired" in refused(verifier, token)


def test_revoked_jti_is_refused_on_hit_and_on_miss(verifier: Verifier, make_token: Token) -> None:
    cached = make_token(jti="cached-jti")
    verifier.verify_token(cached)
    verifier.revocations.add("cached-jti", time.time() + 300)
    assert refused(verifier, cached) == "token revoked"
    verifier.revocations.add("fresh-jti", time.time() + 300)
    assert refused(verifier, make_token(jti="fresh-jti")) == "token revoked"


@pytest.mark.parametrize("offset, ok", [(-29, True), (-31, False)])
def test_expiry_leeway_is_30_seconds(
    verifier: Verifier, make_token: Token, clock: list[float], offset: int, ok: bool
) -> None:
    now = int(clock[0])
    token = make_token(now=now - 400, exp=now + offset)
    if ok:
        assert verifier.verify_token(token).sub == "user-1"
    else:
        refused(verifier, token)


@pytest.mark.parametrize("ahead, ok", [(29, True), (31, False)])
def test_future_iat_beyond_leeway_refused(
    verifier: Verifier, make_token: Token, clock: list[float], ahead: int, ok: bool
) -> None:
    now = int(clock[0])
    token = make_token(iat=now + ahead, exp=now + 300)
    if ok:
        verifier.verify_token(token)
    else:
        refused(verifier, token)


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "exp", "iat", "jti"])
def test_every_required_claim_is_required(
    verifier: Verifier, make_token: Token, claim: str
) -> None:
    refused(verifier, make_token(**{claim: None}))


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "http://authscale-auth.evil"},
        {"iss": "http://authscale"},
        {"aud": "authscale-other"},
        {"aud": "authscal"},
        {"aud": ["authscale", "other"]},
        {"sub": 42},
        {"sub": ""},
        {"jti": 7},
    ],
)
def test_issuer_and_audience_exact_and_claim_types(
    verifier: Verifier, make_token: Token, claims: dict[str, Any]
) -> None:
    refused(verifier, make_token(**claims))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_every_casing(verifier: Verifier, key_material: KeyMaterial, alg: str) -> None:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "iat": now, "exp": now + 60, "jti": "j"}
    header = {"alg": alg, "typ": "at+jwt", "kid": key_material.kid}
    assert refused(verifier, compact(header, payload)) == "algorithm is not RS256"


@pytest.mark.parametrize("encoding", ["pem", "der", "jwk-n"])
def test_hs256_signed_with_the_public_key(
    verifier: Verifier, key_material: KeyMaterial, encoding: str
) -> None:
    public = key_material.private.public_key()
    secret = {
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-n": keylib.to_jwk(public)["n"].encode(),
    }[encoding]
    now = int(time.time())
    header = {"alg": "HS256", "typ": "at+jwt", "kid": key_material.kid}
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "iat": now, "exp": now + 60, "jti": "j"}
    signing_input = compact(header, payload).rsplit(".", 1)[0]
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert refused(verifier, f"{signing_input}.{b64(mac)}") == "algorithm is not RS256"


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256"])
def test_other_algorithms_refused(verifier: Verifier, make_token: Token, alg: str) -> None:
    assert refused(verifier, make_token(algorithm=alg, headers={})) == "algorithm is not RS256"


def test_foreign_key_with_real_kid_refused(verifier: Verifier, make_token: Token) -> None:
    foreign = keylib.generate_private_key()
    assert "InvalidSignature" in refused(verifier, make_token(key=foreign))


def test_tampered_payload_refused(verifier: Verifier, make_token: Token) -> None:
    header, payload, signature = make_token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "admin"
    forged = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    assert "InvalidSignature" in refused(verifier, forged)


@pytest.mark.parametrize(
    "headers, reason",
    [
        ({"crit": ["exp"]}, "crit header present"),
        ({"typ": "JWT"}, "typ is not at+jwt"),
        ({"typ": ""}, "typ is not at+jwt"),
        ({"typ": "rt+jwt"}, "typ is not at+jwt"),
        ({"kid": None}, "kid missing"),
    ],
)
def test_header_rules(
    verifier: Verifier, make_token: Token, headers: dict[str, Any], reason: str
) -> None:
    assert refused(verifier, make_token(headers=headers)) == reason


def test_application_at_jwt_typ_accepted(verifier: Verifier, make_token: Token) -> None:
    assert verifier.verify_token(make_token(headers={"typ": "application/at+jwt"})).mode == "jwt"


@pytest.mark.parametrize("name", ["jku", "x5u", "jwk", "x5c"])
def test_key_naming_headers_are_ignored(verifier: Verifier, make_token: Token, name: str) -> None:
    # The header cannot choose the key: a valid token still verifies with our key only...
    assert verifier.verify_token(make_token(headers={name: "https://attacker.invalid/k"})).sub
    # ...and a token signed by the attacker's key is refused whatever the header names.
    foreign = keylib.generate_private_key()
    jwk = keylib.to_jwk(foreign.public_key())
    refused(verifier, make_token(key=foreign, headers={name: jwk if name == "jwk" else "x"}))


def test_unknown_kid_refused_with_file_keys(verifier: Verifier, make_token: Token) -> None:
    from services.common.verify import UnknownKey

    assert refused(verifier, make_token(headers={"kid": "not-a-known-kid"})) == "unknown kid"
    with pytest.raises(UnknownKey) as info:  # inside the AuthError tree: a 401 like the rest
        verifier.verify_token(make_token(headers={"kid": "not-a-known-kid"}))
    assert info.value.status == 401 and info.value.kid == "not-a-known-kid"


def test_oversized_token_refused_before_parsing(verifier: Verifier, make_token: Token) -> None:
    token = make_token(padding="x" * 9000)
    assert refused(verifier, token) == "token larger than 8 KiB"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b.c",
        "!!!.???.***",
        b64(b"[1,2]") + ".e30.",
        b64(b"{" * 5000) + ".e30.x",
        b64(b'{"alg":"RS256"') + ".e30.x",
    ],
)
def test_garbage_refused(verifier: Verifier, token: str) -> None:
    refused(verifier, token)


def test_deeply_nested_payload_refused(verifier: Verifier, make_token: Token) -> None:
    header = make_token().split(".")[0]
    nested = "[" * 100_000 + "]" * 100_000
    token = f"{header}.{b64(nested.encode())}.x"
    refused(verifier, token[:8192])


def test_non_string_kid_refused(verifier: Verifier, make_token: Token) -> None:
    _, payload, signature = make_token().split(".")
    header = b64(json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": 5}).encode())
    assert refused(verifier, f"{header}.{payload}.{signature}") == "kid missing"
