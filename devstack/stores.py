"""Throwaway local Redis servers (one, or a Redis Cluster) and the harness's one Redis client."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from devstack.processes import StackError, free_port, spawn

REDIS_HINT = (
    "redis-server was not found on PATH. Install it first:\n"
    "  Debian/Ubuntu: sudo apt-get install -y redis-server\n"
    "  macOS:         brew install redis"
)


def require_redis_server() -> None:
    """Raise StackError with install instructions if redis-server is not on PATH."""
    if shutil.which("redis-server") is None:
        raise StackError(REDIS_HINT)


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
        require_redis_server()
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


NODE_TIMEOUT_MS = 1000  # a cluster node unanswered this long is failing: its replica takes over


CLUSTER_BUS_OFFSET = 10000  # a Redis Cluster node's bus listens on its port + 10000


def free_cluster_port() -> int:
    """A free port whose cluster bus port is free too: both taken."""
    return free_port(offset=CLUSTER_BUS_OFFSET)


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
                    str(NODE_TIMEOUT_MS),
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
