"""Child processes for the stack, the tests and the bench: each started so that it dies with
this process (even a SIGKILLed one), free loopback ports, and a group of named children whose
output is streamed, prefixed, to one log.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from services.common.settings import REPO_ROOT


class StackError(RuntimeError):
    """The stack, or one of its processes, could not be started or did not become ready in time."""


# -- children that die with their parent --------------------------------------------------------

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_prctl = _load_prctl()  # resolved once, so the forked child only calls it
_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def _die_with(parent: int) -> Callable[[], None]:
    """A preexec_fn: SIGKILL this child when the thread that forked it exits (Linux).

    PR_SET_PDEATHSIG survives exec. It fires when the parent *thread* ends, which is why
    `spawn` forks from a thread that lives as long as the process. If the parent died before
    the prctl took effect, the child is already an orphan: it kills itself instead.
    """

    def preexec() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def spawn(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """`subprocess.Popen(argv, **kwargs)` for a child that must not outlive this process.

    On Linux the child gets SIGKILL when this process ends, even by SIGKILL. It is forked from
    the main thread, or else from one long-lived spawner thread: never from a thread that may
    end while the child should go on.
    """

    def fork() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, preexec_fn=_die_with(os.getpid()), **kwargs)

    if threading.current_thread() is threading.main_thread():
        return fork()
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stack-spawner")
    return _spawner.submit(fork).result()


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM a child if it is still running, SIGKILL it after `timeout` seconds; reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 20000  # above every fixed port the project uses (8080, 9090, 16686, 6379, ...)
MIN_SPAN = 2048  # fewer ports than this outside the ephemeral range: the kernel picks
_handed_out: set[int] = set()
_ports_lock = threading.Lock()
_random = random.SystemRandom()  # two processes never walk the same sequence


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux's default where
    it cannot be read)."""
    try:
        low, high = (int(x) for x in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def port_span(offset: int = 0) -> tuple[int, int] | None:
    """Where free_port chooses, [lo, hi): from LOWEST_PORT up to the ephemeral range, or above
    it, so that neither a port nor port + `offset` falls in it; None where neither side has
    MIN_SPAN ports (a range widened to 1024-65535, as load machines often are)."""
    low, high = ephemeral_range()
    below = (LOWEST_PORT, low - offset)
    above = (max(high + 1, LOWEST_PORT), 65536 - offset)
    for lo, hi in (below, above):
        if hi - lo >= MIN_SPAN:
            return lo, hi
    return None


def free_port(offset: int | None = None) -> int:
    """A loopback port that nothing listens on and that this process has not handed out
    before; with `offset`, port + offset is such a port too (a Redis Cluster node's bus port),
    and both are taken.

    Outside the kernel's ephemeral range where there is room (port_span): a port found free
    in it can become the local port of an outgoing connection (a service's to its store)
    before the server meant for it binds it. And never one handed out before: the kernel hands
    a port just released out again, so two ports of one stack could be the same. Either way a
    server fails to start or, worse, another one answers on its port (a gateway whose auth
    port an orders replica held: `POST /auth/users` 404)."""
    span = port_span(offset or 0)
    with _ports_lock:
        for _ in range(2000):
            port = _random.randrange(*span) if span else _kernel_port()
            wanted = [port] if offset is None else [port, port + offset]
            if (
                wanted[-1] > 65535
                or _handed_out.intersection(wanted)
                or not all(map(_bindable, wanted))
            ):
                continue
            _handed_out.update(wanted)
            return port
    where = f"{span[0]}-{span[1] - 1}" if span else "the kernel's ephemeral range"
    raise StackError(f"no free port in {where}")


def reserve(ports: Iterable[int]) -> None:
    """Ports this process did not choose but will use (given by another process, or the
    environment): free_port never hands them out, nor a cluster port whose bus port is one of
    them. `make up` under a test takes its ports from the test, which chose them in its own
    process; a cluster node's bus port chosen here could otherwise be the gateway's (CI:
    "address already in use" on the gateway's port)."""
    with _ports_lock:
        _handed_out.update(ports)


def _kernel_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str | None  # None for Redis: readiness is a PING
    port: int
    process: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = None


@dataclass(kw_only=True)
class ProcessGroup:
    """Named child processes, started from the repository root, their output prefixed with
    the name in one log; each can be signalled, killed and reaped alone or with others."""

    log: IO[str] = field(default_factory=lambda: sys.stdout)
    components: dict[str, Component] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def start_component(self, name: str) -> None:
        component = self.components[name]
        if component.process is not None and component.process.poll() is None:
            return
        process = spawn(
            component.argv,
            env=component.env,
            cwd=str(REPO_ROOT),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        component.process = process
        component.pump = threading.Thread(
            target=self._pump, args=(name, process), daemon=True, name=f"log-{name}"
        )
        component.pump.start()

    def _pump(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                with self._lock, contextlib.suppress(ValueError, OSError):
                    self.log.write(f"[{name:>13}] {line}\n")
                    self.log.flush()

    def send_signal(self, name: str, sig: signal.Signals) -> None:
        process = self.components[name].process
        if process is not None and process.poll() is None:
            process.send_signal(sig)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL, timeout: float = 10.0) -> None:
        """Stop one component (SIGKILL by default, to simulate a crash) and reap it."""
        component = self.components[name]
        process = component.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self._reaped(component, timeout)

    def _reaped(self, component: Component, timeout: float) -> None:
        """Forget a component whose process has exited, once its last log lines are out."""
        process = component.process
        assert process is not None
        pump = component.pump
        if pump is not None:
            pump.join(timeout)
        # A pump still reading (a grandchild kept the pipe) holds the reader's lock: leave it.
        if process.stdout is not None and (pump is None or not pump.is_alive()):
            process.stdout.close()
        component.process = None

    def terminate(self, names: Sequence[str], timeout: float) -> None:
        """SIGTERM these components at once, SIGKILL those still running after `timeout`."""
        deadline = time.monotonic() + timeout
        running = [self.components[n] for n in names if self.components[n].process is not None]
        for component in running:
            assert component.process is not None
            if component.process.poll() is None:
                component.process.send_signal(signal.SIGTERM)
        for component in running:
            assert component.process is not None
            try:
                component.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                component.process.kill()
                component.process.wait()
        for component in running:
            self._reaped(component, max(0.2, deadline - time.monotonic()))
