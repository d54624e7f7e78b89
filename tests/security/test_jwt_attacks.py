"""Forged and broken access tokens, at the gateway and at every service directly: all 401.

Long because it is RFC 8725's whole list of forgeries, each tried at every hop of one stack.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.stack import Stack
from services.common import keys as keylib
from tests.security.conftest import Token
from tests.stackutil import Api

ATTACKER = keylib.generate_private_key()
ATTACKER_KID = keylib.thumbprint(ATTACKER.public_key())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"sig") -> str:
    return (
        f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{b64(signature)}"
    )


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "http://authscale-auth",
        "aud": "authscale",
        "sub": "victim",
        "iat": now,
        "exp": now + 300,
        "jti": "j1",
        **extra,
    }


async def assert_refused(api: Api, stack: Stack, token: str, *, everywhere: bool = True) -> None:
    """401 with an opaque problem at the gateway, and at orders and auth called directly."""
    targets = [(stack.gateway_url, "/orders")]
    if everywhere:
        targets += [(stack.orders_urls[0], "/orders"), (stack.auth_url, "/me")]
    for base, path in targets:
        async with api.http.get(
            base + path, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            body = await response.text()
            assert response.status == 401, (base, path, body)
            assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
            assert response.content_type == "application/problem+json"
            problem = json.loads(body)
            assert problem["detail"] == "Invalid or expired credentials."
            assert "Traceback" not in body
            assert len(token) < 16 or token[:40] not in body  # never echoed back


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", ""])
async def test_alg_none_every_casing(api: Api, stack: Stack, alg: str) -> None:
    header = {"alg": alg, "typ": "at+jwt", "kid": ATTACKER_KID}
    for token in (raw_token(header, claims(), b""), raw_token(header, claims())[:-4] + "."):
        await assert_refused(api, stack, token)


@pytest.mark.parametrize("encoding", ["pem", "pem-no-newline", "der", "jwk-n", "jwks-json"])
async def test_hs256_signed_with_the_public_key(
    api: Api, stack: Stack, signing_key: Any, encoding: str
) -> None:
    public = signing_key.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secret = {
        "pem": pem,
        "pem-no-newline": pem.strip(),
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-n": keylib.to_jwk(public)["n"].encode(),
        "jwks-json": json.dumps({"keys": [keylib.to_jwk(public)]}).encode(),
    }[encoding]
    header = {"alg": "HS256", "typ": "at+jwt", "kid": keylib.thumbprint(public)}
    unsigned = raw_token(header, claims()).rsplit(".", 1)[0]
    mac = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
    await assert_refused(api, stack, f"{unsigned}.{b64(mac)}")


async def test_foreign_rsa_key(api: Api, stack: Stack, forge: Token, signing_key: Any) -> None:
    real_kid = keylib.thumbprint(signing_key.public_key())
    for headers in ({"kid": real_kid}, {"kid": ATTACKER_KID}, {}):
        await assert_refused(api, stack, forge(key=ATTACKER, headers=headers))


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256", "ES256"])
async def test_other_algorithms(
    api: Api, stack: Stack, forge: Token, signing_key: Any, alg: str
) -> None:
    key = ec.generate_private_key(ec.SECP256R1()) if alg == "ES256" else signing_key
    await assert_refused(api, stack, forge(key=key, algorithm=alg))


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../etc/passwd",
        "' OR '1'='1",
        "k" * 4000,
        "kid\x00null",
        "",
        "http://127.0.0.1:1/k",
    ],
)
async def test_unknown_and_malicious_kids(api: Api, stack: Stack, forge: Token, kid: str) -> None:
    await assert_refused(api, stack, forge(key=ATTACKER, headers={"kid": kid}))


async def test_non_string_kid(api: Api, stack: Stack, forge: Token) -> None:
    _, payload, signature = forge().split(".")
    for kid in ({"$ne": None}, ["a"], 7, None):
        header = b64(json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": kid}).encode())
        await assert_refused(api, stack, f"{header}.{payload}.{signature}")


class _Recorder(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Recorder.hits.append(self.path)
        body = json.dumps({"keys": [keylib.to_jwk(ATTACKER.public_key())]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def key_server() -> Iterator[str]:
    """An attacker's key server on loopback; the test proves nothing ever calls it."""
    _Recorder.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("name", ["jku", "x5u", "jwk", "x5c"])
async def test_key_naming_headers_fetch_nothing(
    api: Api, stack: Stack, forge: Token, signing_key: Any, key_server: str, name: str
) -> None:
    value: Any = {
        "jku": f"{key_server}/jwks.json",
        "x5u": f"{key_server}/cert.pem",
        "jwk": keylib.to_jwk(ATTACKER.public_key()),
        "x5c": [base64.b64encode(b"not a certificate").decode()],
    }[name]
    real_kid = keylib.thumbprint(signing_key.public_key())
    for kid in (ATTACKER_KID, real_kid):
        await assert_refused(api, stack, forge(key=ATTACKER, headers={name: value, "kid": kid}))
    assert _Recorder.hits == []


@pytest.mark.parametrize(
    "headers",
    [
        {"crit": ["exp"]},
        {"crit": []},
        {"typ": "JWT"},
        {"typ": "rt+jwt"},
        {"typ": "at+jwt; x"},
        {"typ": None},
    ],
)
async def test_header_rules(api: Api, stack: Stack, forge: Token, headers: dict[str, Any]) -> None:
    token = forge(headers=headers)
    if headers.get("typ", "x") is None:  # PyJWT would add typ=JWT; build the header by hand
        _, payload, signature = token.split(".")
        token = ".".join(
            [
                b64(
                    json.dumps(
                        {
                            "alg": "RS256",
                            "kid": json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))[
                                "kid"
                            ],
                        }
                    ).encode()
                ),
                payload,
                signature,
            ]
        )
    await assert_refused(api, stack, token)


async def test_refresh_token_is_not_an_access_token(api: Api, stack: Stack) -> None:
    username, _ = await api.signup()
    _, body = await api.call(
        "POST", "/auth/token", json={"username": username, "password": "correct horse"}
    )
    await assert_refused(api, stack, body["refresh_token"])


async def test_tampered_and_malformed_tokens(api: Api, stack: Stack, forge: Token) -> None:
    header, payload, signature = forge().split(".")
    tampered = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered["sub"] = "someone-else"
    cases = [
        f"{header}.{b64(json.dumps(tampered).encode())}.{signature}",
        f"{header}.{payload}.{signature[:-6]}AAAAAA",
        f"{header}.{payload}",
        f"{header}.{payload}.{signature}.extra",
        f"!!{header}.{payload}.{signature}",
        f"{header}.%%%%.{signature}",
        f"{b64(b'{not json')}.{payload}.{signature}",
        f"{header}.{b64(b'[1,2,3]')}.{signature}",
        f"{header}.{b64(('[' * 50_000).encode())[:6000]}.{signature}",
        "a.b.c",
        ".",
    ]
    for token in cases:
        await assert_refused(api, stack, token)


async def test_oversized_tokens_and_headers(api: Api, stack: Stack, forge: Token) -> None:
    token = forge(padding="x" * 8000)
    assert 8192 < len(token) < 16_000
    await assert_refused(api, stack, token)
    # Past the 16 KiB header limit the HTTP parser refuses before any handler runs.
    async with api.http.get(
        stack.gateway_url + "/orders", headers={"Authorization": "Bearer " + "a" * 20_000}
    ) as r:
        assert r.status == 431  # Request Header Fields Too Large
        assert r.content_type == "application/problem+json"
        assert "Traceback" not in await r.text()


@pytest.mark.parametrize(
    "change, accepted",
    [
        ({"exp": -25}, True),
        ({"exp": -35}, False),
        ({"iat": 25}, True),
        ({"iat": 40}, False),
        ({"nbf": 25}, True),
        ({"nbf": 40}, False),
    ],
)
async def test_time_claims_around_the_30_second_leeway(
    api: Api, stack: Stack, forge: Token, change: dict[str, int], accepted: bool
) -> None:
    now = int(time.time())
    claim, offset = next(iter(change.items()))
    values: dict[str, Any] = {claim: now + offset}
    if claim == "exp":
        values["iat"] = now - 400
    _username, user_id = await api.signup()
    token = forge(sub=user_id, **values)
    if accepted:
        response, _ = await api.call("GET", "/orders", headers={"Authorization": f"Bearer {token}"})
        assert response.status == 200
    else:
        await assert_refused(api, stack, token)


@pytest.mark.parametrize(
    "claims_change",
    [
        {"iss": "http://authscale-auth.evil.example"},
        {"iss": "http://authscale-aut"},
        {"iss": None},
        {"aud": "authscale-admin"},
        {"aud": "authscal"},
        {"aud": ["authscale", "other"]},
        {"aud": None},
        {"sub": None},
        {"exp": None},
        {"iat": None},
        {"jti": None},
        {"sub": 12},
        {"exp": "9999999999"},
    ],
)
async def test_issuer_audience_and_required_claims(
    api: Api, stack: Stack, forge: Token, claims_change: dict[str, Any]
) -> None:
    await assert_refused(api, stack, forge(**claims_change))


async def test_token_in_the_query_string_is_ignored(api: Api, stack: Stack) -> None:
    username, _ = await api.signup()
    token = (await api.jwt_login(username))["Authorization"].split()[1]
    for path in (f"/orders?access_token={token}", f"/orders?limit=5&access_token={token}"):
        response, _problem = await api.call("GET", path)
        assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
