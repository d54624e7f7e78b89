"""Pure logic of the shared library: key thumbprints, settings parsing, gateway path policing."""

from __future__ import annotations

import pytest

from services.common import keys as keylib
from services.common.problems import ProblemError
from services.common.settings import ConfigError, ServerSettings, VerifierSettings
from services.gateway.proxy import check_path, forward_headers
from services.orders.store import validate_idempotency_key, validate_order

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


def test_verifier_settings_from_env() -> None:
    settings = VerifierSettings.from_env(
        {"JWT_REVOCATION": "off", "JWT_JWKS_URL": "http://auth/jwks", "COOKIE_SECURE": "1"}
    )
    assert settings.revocation == "off"
    assert settings.jwks_url == "http://auth/jwks" and settings.public_key_files == ()
    assert settings.cookie_name == "__Host-sid"
    assert VerifierSettings.from_env({}).cookie_name == "sid"


def test_server_settings_from_env() -> None:
    from services.common.settings import ServerSettings

    server = ServerSettings.from_env(
        {"PORT": "9000", "KEEPALIVE_TIMEOUT_SECONDS": "2.5", "BODY_TIMEOUT_SECONDS": "3"}, 8080
    )
    assert (server.port, server.keepalive_timeout_seconds, server.body_timeout_seconds) == (
        9000,
        2.5,
        3.0,
    )
    assert ServerSettings.from_env({}, 8080).port == 8080
    with pytest.raises(ConfigError, match="PORT"):
        ServerSettings.from_env({"PORT": "70000"}, 8080)


@pytest.mark.parametrize(
    "env, name",
    [
        ({"JWT_REVOCATION": "sometimes"}, "JWT_REVOCATION"),
        ({"JWT_LEEWAY_SECONDS": "60"}, "JWT_LEEWAY_SECONDS"),
        ({"SESSION_IDLE_SECONDS": "abc"}, "SESSION_IDLE_SECONDS"),
        ({"COOKIE_SECURE": "maybe"}, "COOKIE_SECURE"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        VerifierSettings.from_env(env)


@pytest.mark.parametrize(
    "path", ["/orders", "/orders/abc", "/auth/.well-known/jwks.json", "/auth/users"]
)
def test_plain_paths_pass(path: str) -> None:
    assert check_path(path + "?limit=5") == path


@pytest.mark.parametrize(
    "path",
    [
        "/auth/../orders",
        "/auth/./users",
        "/auth/%2e%2e/orders",
        "/orders/%2F..",
        "/orders//x",
        "/auth/..%2forders",
        "/orders\\..\\auth",
        "/orders/x;y",
        "/orders/",
        "orders",
        "/orders/\x00",
        "/auth/%00",
    ],
)
def test_tricky_paths_refused(path: str) -> None:
    with pytest.raises(ProblemError) as info:
        check_path(path)
    assert info.value.status == 400


def test_identity_and_hop_by_hop_headers_are_stripped() -> None:
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request(
        "GET",
        "/orders",
        headers={
            "Authorization": "Bearer t",
            "X-User-Id": "admin",
            "X-Auth-Subject": "admin",
            "X-Forwarded-For": "1.2.3.4",
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "hop",
            "Keep-Alive": "timeout=5",
            "Accept": "application/json",
        },
    )
    from services.common.observability import request_id_key

    request[request_id_key] = "rid-1"
    headers = forward_headers(request)
    assert headers["Authorization"] == "Bearer t" and headers["Accept"] == "application/json"
    assert headers["X-Request-ID"] == "rid-1"
    for gone in ("X-User-Id", "X-Auth-Subject", "Connection", "X-Secret", "Keep-Alive"):
        assert gone not in headers
    assert headers.get("X-Forwarded-For") != "1.2.3.4"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"item": "", "quantity": 1},
        {"item": "x" * 201, "quantity": 1},
        {"item": "a", "quantity": 0},
        {"item": "a", "quantity": 1001},
        {"item": "a", "quantity": True},
        {"item": "a", "quantity": 1.5},
        {"item": 5, "quantity": 1},
        {"item": "a", "quantity": 1, "owner": "x"},
        {"item": "a\x00", "quantity": 1},
        {"item": "   ", "quantity": 1},
    ],
)
def test_order_validation_refuses(body: dict[str, object]) -> None:
    with pytest.raises(ProblemError) as info:
        validate_order(body)
    assert info.value.status == 422


def test_order_validation_accepts_bounds() -> None:
    assert validate_order({"item": "x" * 200, "quantity": 1000}) == ("x" * 200, 1000)
    assert validate_idempotency_key("abc-123") == "abc-123"
    for bad in ("", "a b", "x" * 256, "é"):
        with pytest.raises(ProblemError):
            validate_idempotency_key(bad)


def test_every_setting_is_declared_once_with_its_default() -> None:
    """An empty environment gives each dataclass's own defaults: no second default to drift."""
    from dataclasses import fields

    from services.auth.settings import Settings as AuthSettings
    from services.gateway.settings import Settings as GatewaySettings
    from services.orders.settings import Settings as OrdersSettings

    for cls in (AuthSettings, OrdersSettings, GatewaySettings):
        read = cls.from_env({})
        for f in fields(cls):
            if "env" in f.metadata:
                assert getattr(read, f.name) == f.default, (cls.__module__, f.name)
    verifier = VerifierSettings.from_env({})
    for f in fields(VerifierSettings):
        if "env" in f.metadata:
            assert getattr(verifier, f.name) == f.default, f.name
    names = [
        f.metadata["env"]
        for cls in (ServerSettings, VerifierSettings)
        for f in fields(cls)
        if "env" in f.metadata
    ]
    assert len(names) == len(set(names)) and "PORT" in names
