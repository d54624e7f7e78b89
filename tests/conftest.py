"""Shared fixtures: real redis-server processes on free ports, keys and token factories."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common import keys as keylib
from services.stack import _redis_ping, free_port

ISSUER = "http://authscale-auth"
AUDIENCE = "authscale"


@dataclass
class RedisProcess:
    """One real redis-server on a free loopback port, started and stopped by the tests."""

    directory: Path
    extra: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.directory),
                "--enable-debug-command",
                "local",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _redis_ping(self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server on {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


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


@pytest.fixture(scope="session")
def make_token(key_material: KeyMaterial) -> Callable[..., str]:
    """Sign an access token; keyword arguments override claims (None removes one)."""

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
        header = {"kid": key_material.kid, "typ": "at+jwt"}
        header.update(headers or {})
        for name in [n for n, v in header.items() if v is None]:
            del header[name]
        return jwt.encode(payload, key or key_material.private, algorithm=algorithm, headers=header)

    return factory
