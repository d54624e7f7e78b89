"""The whole local topology as plain processes: two Redis stores, auth, orders replicas and the
gateway (and, for the bench's hops, a chain of relays), on loopback ports. The launcher
(`make up`), the end-to-end tests and the bench drive this one Stack class; tests and the bench
on free ports.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devstack.processes import Component, ProcessGroup, StackError, free_port, reserve
from devstack.stores import RedisClusterServers, redis_ping, require_redis_server
from services.common.keys import ensure_keypair
from services.common.settings import REPO_ROOT

__all__ = ["Interrupted", "Ports", "Stack", "StackError"]


class Interrupted(Exception):
    """A stop was requested (a signal) while the stack was starting."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ports:
    gateway: int = 8080
    auth: int = 8081
    orders: tuple[int, ...] = (8082, 8083)
    session_store: int = 6379
    data_store: int = 6380
    # The bench's relay chain, relay-1 first (none unless asked for).
    relays: tuple[int, ...] = ()

    @classmethod
    def free(cls, orders: int = 2, relays: int = 0) -> Ports:
        return cls(
            gateway=free_port(),
            auth=free_port(),
            orders=tuple(free_port() for _ in range(orders)),
            session_store=free_port(),
            data_store=free_port(),
            relays=tuple(free_port() for _ in range(relays)),
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
class Stack(ProcessGroup):
    """Start, probe, break and stop the whole local topology.

    Which processes, with which settings, started and stopped in which order; running them
    (logs, signals, reaping) is ProcessGroup's part, and `log` and `components` are its fields.
    """

    ports: Ports = field(default_factory=Ports)
    workdir: Path | None = None
    keys_dir: Path = REPO_ROOT / "keys"
    env: dict[str, str] = field(default_factory=dict)
    # Polled while starting: once it returns True, start() stops what it began and raises
    # Interrupted (the launcher passes its signal flag).
    cancel: Callable[[], bool] | None = None
    # The session store as a Redis Cluster (3 primaries + 3 replicas) instead of one server.
    session_cluster: bool = False
    # The bench's relay chain: relay-1 .. relay-N (services/relay), relay-i calling relay-i+1,
    # the gateway routing /relay/* to relay-1. On ports.relays (0: as many as it names), free
    # ports for those it does not name.
    relays: int = 0

    def __post_init__(self) -> None:
        require_redis_server()
        self.relays = self.relays or len(self.ports.relays)
        missing = self.relays - len(self.ports.relays)
        if missing > 0:
            extra = tuple(free_port() for _ in range(missing))
            self.ports = dataclasses.replace(self.ports, relays=self.ports.relays + extra)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="authscale-stack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The stack's own ports first: the cluster's nodes and bus ports must miss them.
        reserve(
            [
                self.ports.gateway,
                self.ports.auth,
                *self.ports.orders,
                self.ports.session_store,
                self.ports.data_store,
                *self.ports.relays,
            ]
        )
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

    @property
    def relay_urls(self) -> list[str]:
        """relay-1's first."""
        return [f"http://127.0.0.1:{p}" for p in self.ports.relays[: self.relays]]

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
        if self.relays:
            env["RELAY_UPSTREAMS"] = self.relay_urls[0]
        env.update(self.env)
        return env

    def own_env(self, name: str) -> dict[str, str]:
        """What one service process gets on top of service_env(): a relay, the next relay's
        address (none for the last: it ends the chain)."""
        if not name.startswith("relay-"):
            return {}
        index = int(name.removeprefix("relay-"))
        nexts = self.relay_urls[index:]
        return {"RELAY_NEXT_URL": nexts[0] if nexts else ""}

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
        services = [
            ("auth", "services.auth", self.ports.auth),
            *(
                (f"orders-{index}", "services.orders", port)
                for index, port in enumerate(self.ports.orders, start=1)
            ),
            *(
                (f"relay-{index}", "services.relay", port)
                for index, port in enumerate(self.ports.relays[: self.relays], start=1)
            ),
            ("gateway", "services.gateway", self.ports.gateway),
        ]
        for name, module, port in services:
            self.components[name] = Component(
                name,
                [sys.executable, "-m", module],
                {**svc, "PORT": str(port), **self.own_env(name)},
                f"http://127.0.0.1:{port}/readyz",
                port,
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
            component.env = {**settings, "PORT": str(component.port), **self.own_env(name)}
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
