"""The child processes a run starts beside the stack (Locust, the edge-off gateway): start one
in its own session, wait until it is ready; and the edge-off gateway itself."""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from devstack.processes import free_port, spawn, stop_process
from devstack.stack import Stack
from services.common.settings import REPO_ROOT

Popen = subprocess.Popen[bytes]


def start_child(argv: Sequence[str], env: Mapping[str, str], output: IO[str] | IO[bytes]) -> Popen:
    """`argv` from the repository root in a session of its own, its output into `output`
    (devstack's spawn: it dies with this process)."""
    return spawn(
        argv,
        env=env,
        cwd=str(REPO_ROOT),
        stdout=output,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_until(
    process: Popen, ready: Callable[[], bool], timeout: float, interval: float, exited: str
) -> bool:
    """Poll `ready` every `interval` s until it holds (True) or `timeout` s pass (False); the
    process ending first is an error: `exited`, formatted with its exit code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(exited.format(process.returncode))
        if ready():
            return True
        time.sleep(interval)
    return False


@dataclass
class SideGateway:
    """A second gateway process with GATEWAY_EDGE_AUTH=0 beside the stack's, same settings
    otherwise: the one-hop windows go through it without restarting the services."""

    log: IO[str]
    port: int = field(default_factory=free_port)
    process: Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, stack: Stack, timeout: float = 60.0) -> None:
        self.stop()
        gateway = stack.components["gateway"]
        env = {**gateway.env, "PORT": str(self.port), "GATEWAY_EDGE_AUTH": "0"}
        self.process = start_child(gateway.argv, env, self.log)
        exited = "the edge-off gateway exited with {}"
        if not wait_until(self.process, self._ready, timeout, 0.05, exited):
            raise RuntimeError("the edge-off gateway was not ready in time")

    def _ready(self) -> bool:
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as answer,  # noqa: S310
        ):
            return bool(answer.status == 200)
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, 10)
