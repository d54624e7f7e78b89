"""`python -m devstack` (what `make up` runs): the local stack as plain processes on loopback.

Two Redis stores, auth, orders replicas and the gateway: it starts them, waits until every
/readyz is green, prints the URLs and the demo credentials, streams prefixed logs, and stops on
Ctrl-C, SIGTERM or SIGHUP, at any moment (start-up included) and however many times the signal
arrives: a terminal's Ctrl-C reaches `make` and the launcher alike, and `make` forwards SIGTERM
once more. Every child is started with a parent-death signal, so even a SIGKILLed launcher (or
test run, or bench) leaves no process holding a port behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO, Any

from devstack.client import ensure_user
from devstack.processes import StackError
from devstack.stack import Interrupted, Ports, Stack
from services.common.settings import REPO_ROOT

DEMO_USER = ("demo", "demo-password")


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP as a stop request, safe however often and whenever they come.

    The Python handler only stores the signal number: no lock, no I/O, nothing that can
    deadlock when a second signal interrupts the first handler (Ctrl-C reaches the launcher and
    `make`, which forwards SIGTERM once more). The C-level wake-up fd (a socket pair) makes
    `wait` return at once. The main thread polls `requested` and does the stopping itself.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._previous: dict[int, Any] = {}
        self._previous_fd = -1

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def requested(self) -> bool:
        return self.signum is not None

    def wait(self, timeout: float) -> bool:
        """Sleep until a stop is requested or `timeout` passes; True if one was."""
        if not self.requested():
            select.select([self._reader], [], [], timeout)
            with contextlib.suppress(BlockingIOError, InterruptedError):
                while self._reader.recv(512):
                    pass
        return self.requested()

    def __enter__(self) -> StopSignals:
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        signal.set_wakeup_fd(self._previous_fd)
        self._reader.close()
        self._writer.close()


def _interruptibly(signals: StopSignals, call: Callable[[], object]) -> None:
    """Run a blocking call on a helper thread; raise Interrupted if a stop comes first."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as error:  # handed to the main thread
            failure.append(error)

    worker = threading.Thread(target=run, daemon=True, name="launcher-call")
    worker.start()
    while worker.is_alive():
        if signals.wait(0.05):
            raise Interrupted("stopped while starting")
    if failure:
        raise failure[0]


def _say(text: str, stream: IO[str] | None = None) -> None:
    """Print, even to a terminal that has gone away (SIGHUP): stopping matters more."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=stream or sys.stdout, flush=True)


def banner(stack: Stack, revocation: str) -> str:
    user, password = DEMO_USER
    login = json.dumps({"username": user, "password": password})
    session_store = stack.cluster.url if stack.cluster else stack.redis_url("session-store")
    lines = [
        "",
        "authscale is up.",
        f"  gateway        {stack.gateway_url}   (clients talk to this one)",
        f"  the page       {stack.gateway_url}/   (open it in a browser)",
        f"  auth           {stack.auth_url}",
        *(f"  orders         {url}" for url in stack.orders_urls),
        f"  session store  {session_store}",
        f"  data store     {stack.redis_url('data-store')}  (AOF, appendfsync always)",
        f"  JWT revocation {revocation}",
        f"  demo user      {user} / {password}",
        f"  try:  curl -s -X POST {stack.gateway_url}/auth/token \\",
        f"          -H 'Content-Type: application/json' -d '{login}'",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = Ports.from_env(os.environ)
    parser.add_argument("--gateway-port", type=int, default=defaults.gateway)
    parser.add_argument("--auth-port", type=int, default=defaults.auth)
    parser.add_argument(
        "--orders-ports",
        default=",".join(map(str, defaults.orders)),
        help="comma-separated, one per replica",
    )
    parser.add_argument("--session-store-port", type=int, default=defaults.session_store)
    parser.add_argument("--data-store-port", type=int, default=defaults.data_store)
    parser.add_argument(
        "--revocation", choices=("push", "off"), default=os.environ.get("JWT_REVOCATION", "push")
    )
    parser.add_argument(
        "--session-cluster",
        action="store_true",
        default=os.environ.get("SESSION_CLUSTER", "") not in ("", "0"),
        help="run the session store as a Redis Cluster of 3 primaries + 3 replicas on free "
        "ports (default $SESSION_CLUSTER)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(os.environ.get("STACK_WORKDIR", REPO_ROOT / ".stack")),
        help="where the Redis stores keep their files (default $STACK_WORKDIR or .stack/)",
    )
    parser.add_argument(
        "--keys-dir",
        type=Path,
        default=Path(os.environ.get("KEYS_DIR", REPO_ROOT / "keys")),
        help="signing keys, created on first start (default keys/)",
    )
    args = parser.parse_args(argv)
    ports = Ports(
        gateway=args.gateway_port,
        auth=args.auth_port,
        orders=tuple(int(p) for p in args.orders_ports.split(",")),
        session_store=args.session_store_port,
        data_store=args.data_store_port,
    )
    with StopSignals() as signals:
        try:
            stack = Stack(
                ports=ports,
                workdir=args.workdir,
                keys_dir=args.keys_dir,
                # Per-hop Server-Timing for the page, unless turned off (SERVER_TIMING=0).
                env={
                    "JWT_REVOCATION": args.revocation,
                    "SERVER_TIMING": os.environ.get("SERVER_TIMING") or "1",
                },
                cancel=signals.requested,
                session_cluster=args.session_cluster,
            )
        except StackError as error:
            _say(f"error: {error}", sys.stderr)
            return 1
        try:
            return _run(stack, signals, args.revocation)
        finally:
            _say("stopping...")
            stack.stop()


def _run(stack: Stack, signals: StopSignals, revocation: str) -> int:
    """Start, announce, watch; return on a stop request. The caller stops the stack."""
    try:
        stack.start()
        _interruptibly(signals, lambda: ensure_user(stack.gateway_url, *DEMO_USER))
    except Interrupted:
        return 0
    except StackError as error:
        _say(f"error: {error}", sys.stderr)
        return 1
    _say(banner(stack, revocation))
    while not signals.wait(0.5):
        for component in stack.components.values():
            if component.process is not None and component.process.poll() is not None:
                _say(f"{component.name} exited with {component.process.returncode}")
                component.process = None
    return 0


if __name__ == "__main__":
    sys.exit(main())
