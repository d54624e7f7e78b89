"""The local stack as plain processes: two Redis stores, auth, orders replicas and the gateway.

`python -m devstack` (what `make up` runs) starts it, waits until every /readyz is green,
prints the URLs and the demo credentials, streams prefixed logs, and stops on Ctrl-C, SIGTERM or
SIGHUP, at any moment (start-up included) and however many times the signal arrives: a terminal's
Ctrl-C reaches `make` and the launcher alike, and `make` forwards SIGTERM once more. Every child
is started with a parent-death signal, so even a SIGKILLed launcher (or test run, or bench) leaves
no process holding a port behind. The end-to-end tests and the bench drive the same Stack class
on free ports.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.common.keys import ensure_keypair
from services.common.settings import REPO_ROOT

REDIS_HINT = (
    "redis-server was not found on PATH. Install it first:\n"
    "  Debian/Ubuntu: sudo apt-get install -y redis-server\n"
    "  macOS:         brew install redis"
)
DEMO_USER = ("demo", "demo-password")


class StackError(RuntimeError):
    """The stack could not be started or did not become ready in time."""


class Interrupted(Exception):
    """A stop was requested (a signal) while the stack was starting."""


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True, kw_only=True)
class Ports:
    gateway: int = 8080
    auth: int = 8081
    orders: tuple[int, ...] = (8082, 8083)
    session_store: int = 6379
    data_store: int = 6380

    @classmethod
    def free(cls, orders: int = 2) -> Ports:
        return cls(
            gateway=free_port(),
            auth=free_port(),
            orders=tuple(free_port() for _ in range(orders)),
            session_store=free_port(),
            data_store=free_port(),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Ports:
        default = cls()
        orders = env.get("ORDERS_PORTS")
        return cls(
            gateway=int(env.get("GATEWAY_PORT", default.gateway)),
            auth=int(env.get("AUTH_PORT", default.auth)),
            orders=tuple(int(p) for p in orders.split(",")) if orders else default.orders,
            session_store=int(env.get("SESSION_STORE_PORT", default.session_store)),
            data_store=int(env.get("DATA_STORE_PORT", default.data_store)),
        )


@dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str | None  # None for Redis: readiness is a PING
    port: int
    process: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = None


@dataclass
class Stack:
    """Start, probe, break and stop the whole local topology."""

    ports: Ports = field(default_factory=Ports)
    workdir: Path | None = None
    keys_dir: Path = REPO_ROOT / "keys"
    env: dict[str, str] = field(default_factory=dict)
    log: IO[str] = field(default_factory=lambda: sys.stdout)
    components: dict[str, Component] = field(default_factory=dict)
    # Polled while starting: once it returns True, start() stops what it began and raises
    # Interrupted (the launcher passes its signal flag).
    cancel: Callable[[], bool] | None = None
    # The session store as a Redis Cluster (3 primaries + 3 replicas) instead of one server.
    session_cluster: bool = False

    def __post_init__(self) -> None:
        if shutil.which("redis-server") is None:
            raise StackError(REDIS_HINT)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="authscale-stack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.cluster = (
            RedisClusterServers(self.workdir / "session-cluster") if self.session_cluster else None
        )
        self._define()

    # -- topology -----------------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.auth}"

    @property
    def orders_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports.orders]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.components[name].port}"

    def redis_url(self, name: str) -> str:
        return f"redis://127.0.0.1:{self.components[name].port}/0"

    def service_env(self) -> dict[str, str]:
        """The settings every service process gets; the same names docker compose sets."""
        session_store = f"redis://127.0.0.1:{self.ports.session_store}/0"
        env = {
            "SESSION_STORE_URL": self.cluster.url if self.cluster else session_store,
            "DATA_STORE_URL": f"redis://127.0.0.1:{self.ports.data_store}/0",
            "KEYS_DIR": str(self.keys_dir),
            "JWT_PUBLIC_KEY_FILE": str(self.keys_dir / "public.pem"),
            "AUTH_URL": self.auth_url,
            "AUTH_UPSTREAMS": self.auth_url,
            "ORDERS_UPSTREAMS": ",".join(self.orders_urls),
            "HOST": "127.0.0.1",
        }
        env.update(self.env)
        return env

    def _define(self) -> None:
        assert self.workdir is not None
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        base["PYTHONUNBUFFERED"] = "1"
        base["PYTHONPATH"] = str(REPO_ROOT)
        self._base_env = base
        svc = {**base, **self.service_env()}
        for name, port, extra in (
            (
                "session-store",
                self.ports.session_store,
                ["--save", "", "--appendonly", "no", "--enable-debug-command", "local"],
            ),
            (
                "data-store",
                self.ports.data_store,
                ["--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            ),
        ):
            if name == "session-store" and self.cluster is not None:
                continue
            directory = self.workdir / name
            directory.mkdir(exist_ok=True)
            argv = [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(directory),
                *extra,
            ]
            self.components[name] = Component(name, argv, base, None, port)
        python = sys.executable
        self.components["auth"] = Component(
            "auth",
            [python, "-m", "services.auth"],
            {**svc, "PORT": str(self.ports.auth)},
            f"{self.auth_url}/readyz",
            self.ports.auth,
        )
        for index, port in enumerate(self.ports.orders, start=1):
            self.components[f"orders-{index}"] = Component(
                f"orders-{index}",
                [python, "-m", "services.orders"],
                {**svc, "PORT": str(port)},
                f"http://127.0.0.1:{port}/readyz",
                port,
            )
        self.components["gateway"] = Component(
            "gateway",
            [python, "-m", "services.gateway"],
            {**svc, "PORT": str(self.ports.gateway)},
            f"{self.gateway_url}/readyz",
            self.ports.gateway,
        )

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def service_names(self) -> list[str]:
        return [n for n in self.components if n not in {"session-store", "data-store"}]

    def reconfigure(self, timeout: float = 60.0, **env: str) -> None:
        """Restart every service with changed settings; the stores keep running and their data."""
        self.env.update(env)
        settings = {**self._base_env, **self.service_env()}
        self.terminate(self.service_names, timeout=10.0)
        for name in self.service_names:
            component = self.components[name]
            component.env = {**settings, "PORT": str(component.port)}
            self.start_component(name)
        for name in self.service_names:
            self.wait_ready(name, timeout)

    def start(self, timeout: float = 60.0) -> None:
        ensure_keypair(self.keys_dir)
        try:
            stores = [
                store for store in ("session-store", "data-store") if store in self.components
            ]
            for store in stores:
                self.start_component(store)
            if self.cluster is not None:
                self.cluster.start(timeout)
            for store in stores:
                self.wait_ready(store, timeout)
            for name in self.service_names:
                self.start_component(name)
            for name in self.service_names:
                self.wait_ready(name, timeout)
        except BaseException:
            self.stop()
            raise

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

    def is_ready(self, name: str) -> bool:
        component = self.components[name]
        if component.ready_url is None:
            return redis_ping(component.port)
        try:
            with urllib.request.urlopen(component.ready_url, timeout=1.0) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, TimeoutError):
            return False

    def wait_ready(self, name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        component = self.components[name]
        while time.monotonic() < deadline:
            if self.cancel is not None and self.cancel():
                raise Interrupted(f"stopped while waiting for {name}")
            if component.process is not None and component.process.poll() is not None:
                raise StackError(
                    f"{name} exited with {component.process.returncode}; see its log lines"
                )
            if self.is_ready(name):
                return
            time.sleep(0.05)
        raise StackError(f"{name} was not ready within {timeout:.0f} s")

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

    def restart(self, name: str, timeout: float = 30.0) -> None:
        self.kill(name, signal.SIGTERM)
        self.start_component(name)
        self.wait_ready(name, timeout)

    def stop(self, timeout: float = 3.0) -> None:
        """Stop everything within about `timeout` seconds: the services (gateway first), then
        the stores, each group SIGTERMed at once and SIGKILLed when its share is up."""
        stores = [n for n in self.components if n not in self.service_names]
        self.terminate(list(reversed(self.service_names)), timeout * 2 / 3)
        self.terminate(stores, timeout / 3)
        if self.cluster is not None:
            self.cluster.stop()

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redis_probe(port: int, timeout: float, host: str = "127.0.0.1") -> redis.Redis:
    """A probing client for a local Redis: no retries (a slow or refused answer is the
    finding), nothing sent on connect (RESP2, no CLIENT SETINFO), so INFO commandstats counts
    only what the services send. The harness's one way to talk to Redis."""
    return redis.Redis(
        host=host,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        protocol=2,
        driver_info=None,
    )


def redis_ping(port: int, timeout: float = 0.5) -> bool:
    """True if a Redis server on this loopback port answers PING within the timeout."""
    client = redis_probe(port, timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@dataclass
class RedisServer:
    """One throwaway redis-server on a free loopback port (tests and micro-benchmarks)."""

    directory: Path
    extra: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        if shutil.which("redis-server") is None:
            raise StackError(REDIS_HINT)
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--dir", str(self.directory), "--enable-debug-command", "local", *self.extra]
        self.process = spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not redis_ping(self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise StackError(f"redis-server on {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@dataclass
class RedisClusterServers:
    """A throwaway Redis Cluster: `primaries` primaries with one replica each, on loopback.

    Its URL lists every node, comma-separated: the form SESSION_STORE_URL takes for a cluster.
    Node timeout 1 s, so a failed primary's replica takes over within a few seconds.
    """

    directory: Path
    primaries: int = 3
    ports: list[int] = field(default_factory=list)
    nodes: list[RedisServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.ports:
            self.ports = [free_cluster_port() for _ in range(self.primaries * 2)]

    @property
    def url(self) -> str:
        return ",".join(f"redis://127.0.0.1:{port}" for port in self.ports)

    def start(self, timeout: float = 30.0) -> None:
        self.nodes = []
        for index, port in enumerate(self.ports):
            directory = self.directory / f"node-{index}"
            directory.mkdir(parents=True, exist_ok=True)
            node = RedisServer(
                directory,
                port=port,
                extra=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "1000",
                    "--appendonly",
                    "no",
                    # A replica's first sync starts at once, not after the 5 s default.
                    "--repl-diskless-sync-delay",
                    "0",
                ],
            )
            node.start()
            self.nodes.append(node)
        create = ["redis-cli", "--cluster", "create"]
        create += [f"127.0.0.1:{node.port}" for node in self.nodes]
        create += ["--cluster-replicas", "1", "--cluster-yes"]
        subprocess.run(create, check=True, capture_output=True, timeout=timeout)
        deadline = time.monotonic() + timeout
        # Ready means: every slot served, and every replica synced with its primary (a replica
        # that never synced refuses to take over, so a failover test would wait for nothing).
        while not all(self.cluster_ok(node.port) and self.synced(node.port) for node in self.nodes):
            if time.monotonic() > deadline:
                raise StackError("the Redis Cluster did not become ready")
            time.sleep(0.05)

    @staticmethod
    def _cli(port: int, *command: str) -> str:
        result = subprocess.run(
            ["redis-cli", "-p", str(port), *command],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return result.stdout

    @classmethod
    def cluster_ok(cls, port: int) -> bool:
        return "cluster_state:ok" in cls._cli(port, "cluster", "info")

    @classmethod
    def synced(cls, port: int) -> bool:
        info = cls._cli(port, "info", "replication")
        return "role:master" in info or "master_link_status:up" in info

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def http_json(
    method: str, url: str, body: object | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, object]:
    """A tiny blocking JSON client for the launcher and the bench setup (stdlib only)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


def ensure_user(gateway_url: str, username: str, password: str) -> None:
    status, body = http_json(
        "POST", f"{gateway_url}/auth/users", {"username": username, "password": password}
    )
    if status not in (201, 409):
        raise StackError(f"could not create user {username}: {status} {body}")


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
                env={"JWT_REVOCATION": args.revocation},
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
