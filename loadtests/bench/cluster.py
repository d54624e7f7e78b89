"""The cluster phase: the session store as a Redis Cluster (3 primaries + 3 replicas).

A second stack of the same services, its session store a local cluster, next to the bench's own
(idle meanwhile): the session design's load on one Redis (the bench's stack) and on the cluster,
how the cluster's primaries share the commands, what the store does alone (redis-benchmark GET
and SET on one primary and on the cluster), and a primary's failure with session and JWT
requests running through the gateway: the time until sessions on its slots answer again, every
answer in between (503, never a 500), JWTs unaffected, and a JWT revoked during the failover
refused at every hop once it is over.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from redis.cluster import RedisCluster

from devstack.stack import Stack
from devstack.stores import RedisClusterServers, RedisServer, redis_probe
from loadtests.bench import log
from loadtests.bench.client import PROBE_USER, USER_PREFIX, Gateway, get_status
from loadtests.bench.experiments import revocation_hops
from loadtests.bench.phases import Load, run_phase
from loadtests.bench.results import ClusterResults, Failover, Phase, ShardSpread, StoreThroughput
from loadtests.bench.scrape import Idle, Target, local_stack
from loadtests.bench.stores import redis_benchmark
from loadtests.modes import JWT_PUSH, SESSION
from services.common.keyspace import session_key

RECOVERY_LIMIT_S = 30.0  # a failover that has not recovered by then is reported as such
POLL_S = 0.05
SESSIONS = 12  # sessions logged in before the failure; some land on every primary
BENCH_CLIENTS = 50  # redis-benchmark's connections, as the crossover's shard capacity uses


def _tally(into: dict[str, int], status: int) -> None:
    into[str(status)] = into.get(str(status), 0) + 1


def primaries(cluster: RedisClusterServers) -> list[int]:
    """The ports of the nodes that are primaries now."""
    found = []
    for node in cluster.nodes:
        with redis_probe(node.port, 2.0) as client:
            if client.execute_command("ROLE")[0] in (b"master", "master"):
                found.append(node.port)
    return found


def owner(client: RedisCluster, session_id: str) -> int:
    """The port of the primary that serves this session's slot."""
    node = client.get_node_from_key(session_key(session_id))  # type: ignore[no-untyped-call]
    return int(node.port)


def spread(phase: Phase) -> ShardSpread:
    shards = {k: v for k, v in phase["store_ops_per_request"].items() if k.startswith("shard-")}
    total = sum(shards.values()) or 1.0
    return {
        "ops_per_request": shards,
        "share": {k: round(v / total, 3) for k, v in shards.items()},
    }


def throughput(
    workdir: Path, cluster: RedisClusterServers, requests: int
) -> StoreThroughput | None:
    """redis-benchmark GET/SET on a fresh single redis-server, then on the cluster."""
    single = RedisServer(workdir / "single-bench")
    single.directory.mkdir(parents=True, exist_ok=True)
    try:
        single.start()
        one = redis_benchmark(single.port, requests, BENCH_CLIENTS)
    finally:
        single.stop()
    many = redis_benchmark(cluster.nodes[0].port, requests, BENCH_CLIENTS, cluster=True)
    if one is None or many is None:
        return None
    single_rps = min(one.values())
    cluster_rps = min(many.values())
    return {
        "command": f"redis-benchmark -t get,set -n {requests} -c {BENCH_CLIENTS} [--cluster]",
        "single_rps": single_rps,
        "cluster_rps": cluster_rps,
        "ratio": round(cluster_rps / single_rps, 2) if single_rps else 0.0,
    }


def failover(stack: Stack, target: Target) -> Failover:
    """Kill the primary that holds a probe session while session and JWT requests run."""
    assert stack.cluster is not None
    gateway = Gateway(target.gateway)
    cookies = [gateway.login(SESSION.credential, PROBE_USER) for _ in range(SESSIONS)]
    bearer = gateway.login(JWT_PUSH.credential, PROBE_USER)
    doomed = gateway.login(JWT_PUSH.credential, PROBE_USER)  # revoked during the failover
    first = stack.cluster.nodes[0].port
    with RedisCluster(host="127.0.0.1", port=first, socket_timeout=2) as client:
        owners = [owner(client, _sid(c)) for c in cookies]
    victim_port = owners[0]
    on_victim = [c for c, port in zip(cookies, owners, strict=True) if port == victim_port]
    with redis_probe(victim_port, 5.0) as primary:
        synced = primary.execute_command("WAIT", 1, 2000)  # the replica has every session
    if not synced:
        log("failover: the replica did not acknowledge every write: sessions may be lost")
    victim = next(n for n in stack.cluster.nodes if n.port == victim_port)
    log(f"failover: killing the primary on port {victim_port} ({len(on_victim)} sessions)")
    victim.stop()
    killed = time.monotonic()
    deadline = killed + RECOVERY_LIMIT_S
    # The logout runs beside the polls, as a client would retry one the store could not take.
    with ThreadPoolExecutor(max_workers=1) as pool:
        revoking = pool.submit(_logout_until_accepted, gateway, doomed, deadline)
        sessions: dict[str, int] = {}
        jwts: dict[str, int] = {}
        recovered: float | None = None
        while time.monotonic() < deadline:
            status, _ = gateway.status(on_victim[0], timeout=2)
            _tally(sessions, status)
            _tally(jwts, gateway.status(bearer, timeout=2)[0])
            if status == 200:
                recovered = round(time.monotonic() - killed, 2)
                break
            time.sleep(POLL_S)
        revoked = revoking.result()
    back = sum(gateway.status(c, timeout=2)[0] == 200 for c in on_victim)
    refused = {
        hop.name: _refused_within(hop.url, hop.headers, 3.0)
        for hop in revocation_hops(target, JWT_PUSH, doomed)
    }
    return {
        "recovered_s": recovered,
        "session_statuses": sessions,
        "jwt_statuses": jwts,
        "revoked_refused": refused if revoked else {},
        "sessions_back": back,
        "sessions_on_victim": len(on_victim),
    }


def _sid(headers: Mapping[str, str]) -> str:
    cookie = next(p for p in headers["Cookie"].split("; ") if p.startswith("sid="))
    return cookie.removeprefix("sid=")


def _logout_until_accepted(gateway: Gateway, headers: Mapping[str, str], deadline: float) -> bool:
    """Log out until the answer is a 204 (a refused or timed-out attempt is tried again)."""
    while time.monotonic() < deadline:
        try:
            if gateway.logout(headers, timeout=2) == 204:
                return True
        except OSError:
            pass  # reset or timed out: the store is failing over
        time.sleep(POLL_S)
    return False


def _refused_within(url: str, headers: Mapping[str, str], limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if get_status(url, headers)[0] == 401:
            return True
        time.sleep(POLL_S)
    return False


def cluster_phase(
    single_target: Target, load: Load, users: int, workdir: Path, idle: Idle, requests: int
) -> ClusterResults:
    """Measure the session design on one Redis (the bench's stack, switched to it by the
    caller), then start the cluster stack and measure the same there."""
    single = run_phase(single_target, SESSION, load, workdir, "cluster-single", idle)
    log("cluster: starting a stack whose session store is 3 primaries + 3 replicas")
    stack = local_stack(workdir, "cluster-stack", SESSION.settings, session_cluster=True)
    try:
        stack.start()
        assert stack.cluster is not None
        shards = {f"shard-{i}": port for i, port in enumerate(primaries(stack.cluster), 1)}
        target = Target.of(stack, {**shards, "data_store": stack.ports.data_store})
        gateway = Gateway(target.gateway)
        for index in range(users):
            gateway.ensure_user(f"{USER_PREFIX}-{index}")
        gateway.ensure_user(PROBE_USER)
        clustered = run_phase(target, SESSION, load, workdir, "cluster-3", Idle.measure(target, 2))
        store = throughput(workdir, stack.cluster, requests)
        result: ClusterResults = {
            "primaries": len(shards),
            "replicas": len(stack.cluster.nodes) - len(shards),
            "single": single,
            "cluster": clustered,
            "spread": spread(clustered),
            "throughput": store,
            "failover": failover(stack, target),
        }
    finally:
        stack.stop()
        stack.log.close()
    f = result["failover"]
    log(
        f"cluster: shares {result['spread']['share']}, failover recovered after "
        f"{f['recovered_s']} s, session answers {f['session_statuses']}, JWT {f['jwt_statuses']}"
    )
    return result
