"""Shared fixtures: real redis-server processes on free ports, keys and token factories."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientSession, ClientTimeout, DummyCookieJar
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.stores import RedisServer
from services.common import keys as keylib
from tests.stackutil import Api

ISSUER = "http://authscale-auth"
AUDIENCE = "authscale"


RedisProcess = RedisServer

# Where the suite keeps its files when the caller did not choose (TMPDIR): a memory-backed
# directory. The data stores run `appendfsync always`; on a disk shared with other machines one
# fsync was seen taking 1.2 s (redis-benchmark beside a large write, 2026-11-23), past the
# services' 0.5 s store timeout, so a signup answered 503 in CI. The product's answer to a stalled
# disk (503 within the bound) has its own tests; the rest of the suite must not depend on the
# host's disk. Same redis-server, same settings: only the directory moves.
MEMORY_TMP = Path("/dev/shm")


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("TMPDIR") or not (MEMORY_TMP.is_dir() and os.access(MEMORY_TMP, os.W_OK)):
        return
    root = MEMORY_TMP / f"authscale-tests-{os.getuid()}"  # one per user: 0700
    root.mkdir(mode=0o700, exist_ok=True)
    os.environ["TMPDIR"] = str(root)  # service, Locust and bench processes the suite starts
    tempfile.tempdir = str(root)  # this process (pytest's tmp_path included)


@pytest.fixture(scope="session")
def redis_available() -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not on PATH: sudo apt-get install -y redis-server")


@pytest.fixture
def make_redis(redis_available: None, tmp_path: Path) -> Iterator[Callable[..., RedisProcess]]:
    started: list[RedisProcess] = []

    def factory(*extra: str) -> RedisProcess:
        directory = tmp_path / f"redis-{len(started)}"
        directory.mkdir()
        server = RedisProcess(directory, list(extra))
        server.start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@dataclass(frozen=True)
class KeyMaterial:
    directory: Path
    private: rsa.RSAPrivateKey
    kid: str


@pytest.fixture(scope="session")
def key_material(tmp_path_factory: pytest.TempPathFactory) -> KeyMaterial:
    directory = tmp_path_factory.mktemp("keys")
    keylib.ensure_keypair(directory)
    private = keylib.load_private_pem((directory / "private.pem").read_bytes())
    return KeyMaterial(directory, private, keylib.thumbprint(private.public_key()))


def token_signer(private: rsa.RSAPrivateKey) -> Callable[..., str]:
    """A factory of access tokens signed by this key; keyword arguments override claims and
    header entries (None removes one), `key`/`algorithm` sign with something else."""
    kid = keylib.thumbprint(private.public_key())

    def factory(
        *,
        key: Any = None,
        algorithm: str = "RS256",
        headers: dict[str, Any] | None = None,
        now: int | None = None,
        **claims: Any,
    ) -> str:
        issued = int(time.time()) if now is None else now
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-1",
            "username": "alice",
            "iat": issued,
            "exp": issued + 300,
            "jti": uuid.uuid4().hex,
        }
        for name, value in claims.items():
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value
        header = {"kid": kid, "typ": "at+jwt"}
        header.update(headers or {})
        for name in [n for n, v in header.items() if v is None]:
            del header[name]
        return jwt.encode(payload, key or private, algorithm=algorithm, headers=header)

    return factory


@pytest.fixture(scope="session")
def make_token(key_material: KeyMaterial) -> Callable[..., str]:
    return token_signer(key_material.private)


@pytest.fixture
async def api(stack: Any) -> AsyncIterator[Api]:
    """A client of the gateway of whichever `stack` fixture the test's package defines."""
    async with ClientSession(timeout=ClientTimeout(total=10), cookie_jar=DummyCookieJar()) as http:
        yield Api(http, stack.gateway_url)
