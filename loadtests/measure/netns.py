"""The session store moved away: a redis-server in a network namespace of its own, reached over
a veth pair, with the round trip added by the kernel (tc netem) or, where netem is not allowed,
by the TCP delay proxy (loadtests/delayproxy.py) in front of it.

`remote_store()` is a context manager: whatever happens (an exception, SIGTERM turned into
SystemExit, Ctrl-C), on the way out the redis-server is stopped, the veth pair and the namespace
are deleted and the proxy closed. A namespace left behind by a run that was SIGKILLed is named
after its process id and removed by the next run (`sweep`). Without the rights to create a
namespace (not root, no iproute2), the store is a loopback redis-server behind the proxy.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devstack.processes import free_port, spawn
from devstack.stores import RedisServer
from loadtests.delayproxy import DelayProxy
from loadtests.measure.servers import StoreAddress, connect, median_rtt_ms

PREFIX = "authscale-xo-"
REDIS_PORT = 6379


def _ip(*args: str, namespace: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *args] if namespace is None else ["ip", "netns", "exec", namespace, "ip", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep() -> list[str]:
    """Delete this tool's namespaces (and their veths) whose run is no longer alive."""
    if shutil.which("ip") is None:
        return []
    removed = []
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.fullmatch(re.escape(PREFIX) + r"(\d+)", name)
        if match and not _alive(int(match.group(1))):
            _ip("link", "del", _veth_names(int(match.group(1)))[0])
            _ip("netns", "del", name)
            removed.append(name)
    return removed


def _veth_names(pid: int) -> tuple[str, str]:
    return f"axo{pid}h", f"axo{pid}n"  # at most 15 characters


@dataclass
class RemoteStore:
    """A session store some distance away; `set_rtt` moves it."""

    method: str  # netem | proxy
    note: str
    namespace: bool
    address: StoreAddress  # where the services connect
    direct: StoreAddress  # the store itself, for INFO without the added delay
    _set: Callable[[float], None]
    rtt_ms: float = 0.0
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://{self.address.host}:{self.address.port}/0"

    def set_rtt(self, rtt_ms: float) -> None:
        self._set(rtt_ms)
        self.rtt_ms = rtt_ms

    def measured_rtt_ms(self) -> float:
        return median_rtt_ms(self.address)


class _Namespace:
    """A namespace with a veth pair into it: host side .1, namespace side .2 of a /30."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.name = f"{PREFIX}{self.pid}"
        self.host_if, self.ns_if = _veth_names(self.pid)
        octet = random.randint(16, 250)
        self.host_ip, self.ns_ip = f"10.213.{octet}.1", f"10.213.{octet}.2"
        self.made: list[str] = []

    def create(self) -> None:
        steps: list[tuple[tuple[str, ...], str | None]] = [
            (("netns", "add", self.name), None),
            (("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if), None),
            (("link", "set", self.ns_if, "netns", self.name), None),
            (("addr", "add", f"{self.host_ip}/30", "dev", self.host_if), None),
            (("link", "set", self.host_if, "up"), None),
            (("addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if), self.name),
            (("link", "set", self.ns_if, "up"), self.name),
            (("link", "set", "lo", "up"), self.name),
        ]
        for args, namespace in steps:
            done = _ip(*args, namespace=namespace)
            if done.returncode != 0:
                raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")
            if args[:2] == ("netns", "add"):
                self.made.append("netns")
            elif args[:2] == ("link", "add"):
                self.made.append("veth")

    def netem(self, rtt_ms: float) -> None:
        """Half the round trip on each side's egress: to the store, and back."""
        delay = f"{rtt_ms / 2:.3f}ms"
        for device, prefix in (
            (self.host_if, []),
            (self.ns_if, ["ip", "netns", "exec", self.name]),
        ):
            done = _run(
                *prefix, "tc", "qdisc", "replace", "dev", device, "root", "netem", "delay", delay
            )
            if done.returncode != 0:
                raise OSError(f"tc netem: {done.stderr.strip() or done.stdout.strip()}")

    def delete(self) -> None:
        if "veth" in self.made:
            _ip("link", "del", self.host_if)  # takes its peer with it
        if "netns" in self.made:
            _ip("netns", "del", self.name)
        self.made.clear()


def _start_redis_in(namespace: _Namespace, directory: Path) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    argv = ["ip", "netns", "exec", namespace.name, "redis-server", "--bind", namespace.ns_ip]
    argv += ["--port", str(REDIS_PORT), "--save", "", "--appendonly", "no"]
    argv += ["--protected-mode", "no", "--dir", str(directory)]
    process = spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = StoreAddress(namespace.ns_ip, REDIS_PORT)
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(Exception), connect(address, 0.5) as client:
            if client.ping():
                return process
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(5)
            raise OSError("redis-server in the namespace did not start")
        time.sleep(0.05)


@contextlib.contextmanager
def remote_store(workdir: Path, prefer_netem: bool = True) -> Iterator[RemoteStore]:
    """A redis-server at a distance the caller sets; see the module docstring."""
    sweep()
    namespace: _Namespace | None = _Namespace() if shutil.which("ip") else None
    process: subprocess.Popen[bytes] | None = None
    loopback: RedisServer | None = None
    proxy: DelayProxy | None = None
    notes: list[str] = []
    try:
        direct: StoreAddress
        if namespace is not None:
            try:
                namespace.create()
                process = _start_redis_in(namespace, workdir / "netns-store")
            except OSError as error:
                notes.append(f"no network namespace ({error})")
                namespace.delete()
                namespace = None
        if namespace is None:
            loopback = RedisServer(workdir / "remote-store", port=free_port())
            (workdir / "remote-store").mkdir(parents=True, exist_ok=True)
            loopback.start()
            direct = StoreAddress("127.0.0.1", loopback.port)
        else:
            direct = StoreAddress(namespace.ns_ip, REDIS_PORT)
        if namespace is not None and prefer_netem:
            try:
                namespace.netem(0.0)
                ns = namespace
                yield RemoteStore(
                    "netem",
                    "tc netem on both ends of a veth pair into a network namespace",
                    True,
                    direct,
                    direct,
                    ns.netem,
                )
                return
            except OSError as error:
                notes.append(f"netem not allowed here: {error}")
        proxy = DelayProxy(direct.port, target_host=direct.host).start()
        where = (
            "a redis-server in a network namespace (veth pair)"
            if namespace is not None
            else "a loopback redis-server"
        )
        note = f"the TCP delay proxy (loadtests/delayproxy.py) in front of {where}"
        if notes:
            note += "; " + "; ".join(notes)

        def set_delay(rtt_ms: float) -> None:
            assert proxy is not None
            proxy.delay_ms = rtt_ms

        yield RemoteStore(
            "proxy",
            note,
            namespace is not None,
            StoreAddress("127.0.0.1", proxy.port),
            direct,
            set_delay,
        )
    finally:
        if proxy is not None:
            proxy.close()
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(5)
        if loopback is not None:
            loopback.stop()
        if namespace is not None:
            namespace.delete()
