"""The local stack as plain processes: two Redis stores, auth, orders replicas and the gateway.

`python -m services.stack` (what `make up` runs) starts it, waits until every /readyz is green,
prints the URLs and the demo credentials, streams prefixed logs, and stops on Ctrl-C or SIGTERM.
The end-to-end tests and the bench drive the same Stack class on free ports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

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

    def __post_init__(self) -> None:
        if shutil.which("redis-server") is None:
            raise StackError(REDIS_HINT)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="authscale-stack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
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
        env = {
            "SESSION_STORE_URL": f"redis://127.0.0.1:{self.ports.session_store}/0",
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
        for name in self.service_names:
            self.kill(name, signal.SIGTERM)
        for name in self.service_names:
            component = self.components[name]
            component.env = {**settings, "PORT": str(component.port)}
            self.start_component(name)
        for name in self.service_names:
            self.wait_ready(name, timeout)

    def start(self, timeout: float = 60.0) -> None:
        ensure_keypair(self.keys_dir)
        try:
            for name in ("session-store", "data-store"):
                self.start_component(name)
            for name in ("session-store", "data-store"):
                self.wait_ready(name, timeout)
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
        process = subprocess.Popen(
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
        if component.pump is not None:
            component.pump.join(timeout)
        if process.stdout is not None:
            process.stdout.close()
        component.process = None

    def restart(self, name: str, timeout: float = 30.0) -> None:
        self.kill(name, signal.SIGTERM)
        self.start_component(name)
        self.wait_ready(name, timeout)

    def stop(self) -> None:
        for name in reversed(list(self.components)):
            self.kill(name, signal.SIGTERM)

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redis_ping(port: int, timeout: float = 0.5) -> bool:
    """True if a Redis server on this loopback port answers PING within the timeout."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


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
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


@contextlib.contextmanager
def _signals_stop() -> Iterator[threading.Event]:
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def banner(stack: Stack, revocation: str) -> str:
    user, password = DEMO_USER
    login = json.dumps({"username": user, "password": password})
    lines = [
        "",
        "authscale is up.",
        f"  gateway        {stack.gateway_url}   (clients talk to this one)",
        f"  auth           {stack.auth_url}",
        *(f"  orders         {url}" for url in stack.orders_urls),
        f"  session store  {stack.redis_url('session-store')}",
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
        "--workdir",
        type=Path,
        default=REPO_ROOT / ".stack",
        help="where the Redis stores keep their files (default .stack/)",
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
    try:
        stack = Stack(
            ports=ports,
            workdir=args.workdir,
            keys_dir=args.keys_dir,
            env={"JWT_REVOCATION": args.revocation},
        )
        with _signals_stop() as stop:
            stack.start()
            try:
                ensure_user(stack.gateway_url, *DEMO_USER)
                print(banner(stack, args.revocation), flush=True)
                while not stop.wait(0.5):
                    for component in stack.components.values():
                        if component.process is not None and component.process.poll() is not None:
                            print(
                                f"{component.name} exited with {component.process.returncode}",
                                flush=True,
                            )
                            component.process = None
            finally:
                print("stopping...", flush=True)
                stack.stop()
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
