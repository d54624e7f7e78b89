"""One stack for the adversarial suite: verifiers on JWKS, short client timeouts, real stores."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.stack import Ports, Stack
from services.common import keys as keylib
from tests.conftest import token_signer
from tests.stackutil import running

Token = Callable[..., str]


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_available: None) -> Iterator[Stack]:
    ports = Ports.free()
    yield from running(
        tmp_path_factory.mktemp("security"),
        ports,
        # Verifiers fetch keys from auth's JWKS, so unknown-kid floods hit the real fetch path.
        JWT_JWKS_URL=f"http://127.0.0.1:{ports.auth}/.well-known/jwks.json",
        KEEPALIVE_TIMEOUT_SECONDS="2",
        BODY_TIMEOUT_SECONDS="2",
        LOGIN_MAX_FAILURES="5",
        LOGIN_WINDOW_SECONDS="60",
    )


@pytest.fixture(scope="package")
def signing_key(stack: Stack) -> Any:
    return keylib.load_private_pem((stack.keys_dir / "private.pem").read_bytes())


@pytest.fixture(scope="package")
def forge(signing_key: Any) -> Token:
    """Sign tokens with the stack's real key (to test every rule but the signature)."""
    return token_signer(signing_key)


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
