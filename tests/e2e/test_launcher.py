"""`make up` as a user runs it: the launcher prints the banner, and SIGTERM stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.common.settings import REPO_ROOT
from services.stack import Ports, redis_ping


def test_launcher_starts_prints_and_stops_cleanly(tmp_path: Path, redis_available: None) -> None:
    ports = Ports.free()
    argv = [
        sys.executable,
        "-m",
        "services.stack",
        "--workdir",
        str(tmp_path / "stack"),
        "--gateway-port",
        str(ports.gateway),
        "--auth-port",
        str(ports.auth),
        "--orders-ports",
        ",".join(map(str, ports.orders)),
        "--session-store-port",
        str(ports.session_store),
        "--data-store-port",
        str(ports.data_store),
    ]
    env = {**os.environ, "KEYS_DIR": str(tmp_path / "keys"), "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while not any("Ctrl-C stops everything." in line for line in lines):
        assert time.monotonic() < deadline and process.poll() is None, "".join(lines[-20:])
        lines.append(process.stdout.readline())
    banner = "".join(lines)
    assert f"http://127.0.0.1:{ports.gateway}" in banner and "demo / demo-password" in banner
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=30)[0]
    assert process.returncode == 0, rest[-2000:]
    assert "stopping..." in rest
    assert not redis_ping(ports.session_store) and not redis_ping(ports.data_store)
