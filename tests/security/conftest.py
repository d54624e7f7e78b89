"""One stack for the adversarial suite: verifiers on JWKS, short client timeouts, real stores."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest

from services.common import keys as keylib
from services.stack import Ports, Stack
from tests.conftest import AUDIENCE, ISSUER
from tests.stackutil import launch

Token = Callable[..., str]


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    ports = Ports.free()
    running = launch(
        tmp_path_factory.mktemp("security"),
        ports,
        # Verifiers fetch keys from auth's JWKS, so unknown-kid floods hit the real fetch path.
        JWT_JWKS_URL=f"http://127.0.0.1:{ports.auth}/.well-known/jwks.json",
        KEEPALIVE_TIMEOUT_SECONDS="2",
        BODY_TIMEOUT_SECONDS="2",
        LOGIN_MAX_FAILURES="5",
        LOGIN_WINDOW_SECONDS="60",
    )
    yield running
    running.stop()
    running.log.close()


@pytest.fixture(scope="package")
def signing_key(stack: Stack) -> Any:
    return keylib.load_private_pem((stack.keys_dir / "private.pem").read_bytes())


@pytest.fixture(scope="package")
def forge(signing_key: Any) -> Token:
    """Sign a token with the stack's real key; keyword arguments override claims or header."""
    kid = keylib.thumbprint(signing_key.public_key())

    def factory(
        *,
        key: Any = None,
        algorithm: str = "RS256",
        headers: dict[str, Any] | None = None,
        sub: str = "nobody",
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": sub,
            "username": "x",
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        for name, value in claims.items():
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value
        header = {"kid": kid, "typ": "at+jwt", **(headers or {})}
        return jwt.encode(payload, key or signing_key, algorithm=algorithm, headers=header)

    return factory


def redis_command(port: int, *args: str) -> bytes:
    """One raw RESP command to a store (to count keys before and after an attack)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"".join(parts))
        return sock.recv(65536)


def dbsize(port: int) -> int:
    return int(redis_command(port, "DBSIZE")[1:].strip())


@pytest.fixture
def store_sizes(stack: Stack) -> Callable[[], tuple[int, int]]:
    def read() -> tuple[int, int]:
        return dbsize(stack.ports.session_store), dbsize(stack.ports.data_store)

    return read
