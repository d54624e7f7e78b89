"""The HTTP server every service runs (services/common/runtime.py), as real processes.

Requests HTTP cannot parse get a problem, not aiohttp's banner and echo; clients that stop
reading their responses are cut off like clients that stop sending.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from devstack.processes import free_port
from devstack.stores import RedisServer
from services.common.settings import REPO_ROOT
from tests.conftest import KeyMaterial

WRITE_TIMEOUT = 2.0  # BODY_TIMEOUT_SECONDS of the processes below


@dataclass
class Service:
    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


def start_service(name: str, port: int, workdir: Path, env: dict[str, str]) -> Service:
    log_path = workdir / f"{name}.log"
    log = log_path.open("wb")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"],
        env={**base, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT), **env},
        cwd=str(REPO_ROOT),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    service = Service(name, port, log_path, process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return service
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    service.stop()
    raise RuntimeError(f"{name} did not answer /healthz within 60 s")


@pytest.fixture(scope="module")
def services(
    tmp_path_factory: pytest.TempPathFactory, key_material: KeyMaterial, redis_available: None
) -> Iterator[dict[str, Service]]:
    """An orders process and a gateway in front of it (as auth and orders upstream alike)."""
    workdir = tmp_path_factory.mktemp("runtime")
    (workdir / "redis").mkdir()
    redis = RedisServer(workdir / "redis")
    redis.start()
    orders_port, gateway_port = free_port(), free_port()
    env = {
        "SESSION_STORE_URL": redis.url,
        "DATA_STORE_URL": redis.url.replace("/0", "/1"),
        "JWT_PUBLIC_KEY_FILE": str(key_material.directory / "public.pem"),
        "AUTH_URL": f"http://127.0.0.1:{orders_port}",
        "AUTH_UPSTREAMS": f"http://127.0.0.1:{orders_port}",
        "ORDERS_UPSTREAMS": f"http://127.0.0.1:{orders_port}",
        "BODY_TIMEOUT_SECONDS": str(WRITE_TIMEOUT),
        "LOG_LEVEL": "INFO",
        # One probe at start-up, then none: a probe timing out on a busy machine would log a
        # replica state change in the middle of a test that counts log lines.
        "HEALTH_INTERVAL_SECONDS": "3600",
    }
    started: dict[str, Service] = {}
    try:
        started["orders"] = start_service(
            "orders", orders_port, workdir, {**env, "PORT": str(orders_port)}
        )
        started["gateway"] = start_service(
            "gateway", gateway_port, workdir, {**env, "PORT": str(gateway_port)}
        )
        yield started
    finally:
        for service in started.values():
            service.stop()
        redis.stop()


async def exchange(port: int, payload: bytes) -> bytes:
    """Send raw bytes, read until the server closes (it must, after a parse error)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        async with asyncio.timeout(15):
            return await reader.read()
    finally:
        writer.close()


MARKER = b"echo-me-not"
MALFORMED = {
    "bad request-target byte": (b"GET /orders\xff" + MARKER + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "control in the target": (b"GET /" + MARKER + b"\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "bad header name": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: " + MARKER + b"\r\n\r\n",
        400,
    ),
    "control in a header name": (
        b"GET / HTTP/1.1\r\nHost: x\r\nX\x01" + MARKER + b": y\r\n\r\n",
        400,
    ),
    "NUL in a header value": (
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00" + MARKER + b"\r\n\r\n",
        400,
    ),
    "not HTTP at all": (b"\x16\x03\x01\x00\xa5\x01\x00" + MARKER + b"\r\n\r\n", 400),
    "bad version": (b"GET / HTTP/9." + MARKER + b"\r\nHost: x\r\n\r\n", 400),
    "over 100 headers": (
        b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, MARKER) for i in range(101))
        + b"\r\n",
        431,
    ),
    "a 40 KB header": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + MARKER * 4000 + b"\r\n\r\n", 431),
    "a 20 KB request line": (b"GET /" + MARKER * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
}


@pytest.mark.parametrize("service", ["gateway", "orders"])
@pytest.mark.parametrize("case", list(MALFORMED))
async def test_unparsable_requests_get_a_quiet_problem(
    services: dict[str, Service], service: str, case: str
) -> None:
    target = services[service]
    payload, status = MALFORMED[case]
    before = len(target.log_lines())
    answer = await exchange(target.port, payload)
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    assert status_line.split(" ")[1] == str(status), answer[:300]
    assert headers["content-type"] == "application/problem+json"
    assert headers["server"] == "authscale"
    problem = json.loads(body)
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert MARKER not in answer  # the request is not echoed
    # The log line was written before the answer went out: no waiting needed to count it.
    new = target.log_lines()[before:]
    assert len(new) == 1, new
    entry = json.loads(new[0])
    assert (entry["level"], entry["logger"]) == ("WARNING", "authscale.runtime"), entry
    assert "exc" not in entry and "Traceback" not in new[0] and MARKER.decode() not in new[0]


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="TCP_INFO is Linux-only")
@pytest.mark.parametrize("service", ["gateway", "orders"])
def test_a_client_that_stops_reading_is_cut_off(services: dict[str, Service], service: str) -> None:
    target = services[service]
    sock = socket.socket()
    # A tiny receive window: the server's responses pile up in its own buffers.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", target.port))
    try:
        # About 6 KB of Prometheus text per answer: megabytes asked for, nothing read.
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 2000)
        started = time.monotonic()
        deadline = started + WRITE_TIMEOUT + 20  # generous: the machine is shared
        state = 1
        while time.monotonic() < deadline:
            state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
            if state != 1:  # no longer TCP_ESTABLISHED: the server reset the connection
                break
            time.sleep(0.05)
        assert state != 1, "the server still holds a connection whose client never reads"
    finally:
        sock.close()
    assert any("stopped reading" in line for line in target.log_lines())
    # The service itself is unharmed.
    with urllib.request.urlopen(f"http://127.0.0.1:{target.port}/healthz", timeout=5) as r:
        assert r.status == 200
