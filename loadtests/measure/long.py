"""`--long`: the experiments beside the measured curves, after them, on the run's own stack,
load generator and definitions (open-model windows from meter.py, latency from each request's
intended start, CPU from the scheduler's account):

- nginx: nginx and the gateway proxying the same GET to orders at the same offered rate, each
  proxy process's CPU per request (skipped, with the reason, where nginx is not installed);
- rotation: auth restarted with a new signing key while a JWT design's load runs, then load
  with the new key's tokens (each verifier fetches the new key from auth's JWKS once);
- failover: a second stack whose session store is a Redis Cluster, the session design's load
  on it, one primary killed while that load runs;
- traced: the services restarted with tracing on, one window per design, and each hop's
  verification and store time read off the spans (traced.py).

Each experiment that fails is noted and the others still run: results.json's `long` holds what
was measured, `long.skipped` why the rest was not.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from redis.cluster import RedisCluster

from devstack.otlp import collecting
from devstack.processes import free_port, spawn, stop_process
from devstack.stack import Ports, Stack
from devstack.stores import RedisClusterServers, RedisServer, redis_probe
from loadtests.load import Isolation, Plan, Schedule, Target, Workers, pin
from loadtests.measure import cpu, servers, traced
from loadtests.measure.client import Gateway, get_status, get_text
from loadtests.measure.meter import ORDERS, Meter, at_rest
from loadtests.measure.revocation import hops_of
from loadtests.measure.schema import (
    Failover,
    Long,
    NginxReference,
    ProxyFigure,
    Rotation,
    RotationWindow,
    Shards,
    TracedDesign,
    Window,
)
from loadtests.measure.servers import StoreAddress
from loadtests.modes import BY_NAME, JWT_PUSH, SESSION, Mode, select, settings_groups
from services.common import keys as keylib
from services.common.keyspace import session_key

if TYPE_CHECKING:
    from loadtests.measure.run import Bench

T = TypeVar("T")
POLL_S = 0.05  # the interval of every poll below
START_LIMIT_S = 30.0  # for a window's load to reach the servers, a proxy to listen
RECOVERY_LIMIT_S = 30.0  # a failover not recovered by then is recorded as such
PROBE_SESSIONS = 12  # sessions logged in before the failure: some land on every primary
BENCH_CLIENTS = 50  # redis-benchmark's connections
NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  upstream orders {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://orders;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


class Skipped(Exception):
    """An experiment that cannot run here; its message is the reason, recorded."""


def experiments(bench: Bench, probe_user: str) -> Long:
    """The four experiments, in an order that restarts the services least."""
    began = time.monotonic()
    out: Long = {
        "failover": None,
        "traced": None,
        "rotation": None,
        "nginx": None,
        "skipped": {},
        "wall_s": 0.0,
    }

    def attempt(name: str, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except Skipped as reason:
            out["skipped"][name] = str(reason)
        except Exception as error:  # one experiment's failure must not cost the others
            out["skipped"][name] = f"failed: {type(error).__name__}: {error}"[:400]
        bench.say(f"long: {name}: {out['skipped'][name]}")
        return None

    restart(bench, JWT_PUSH.settings)
    out["nginx"] = attempt("nginx", lambda: nginx_reference(bench, probe_user))
    out["rotation"] = attempt("rotation", lambda: key_rotation(bench, probe_user))
    out["failover"] = attempt("failover", lambda: cluster_failover(bench, probe_user))
    out["traced"] = attempt("traced", lambda: traced_windows(bench))
    out["wall_s"] = round(time.monotonic() - began, 1)
    return out


# -- the run's stack, its load ----------------------------------------------------------------


def restart(bench: Bench, settings: Mapping[str, str], **extra: str) -> None:
    """The run's services restarted with `settings` and the session store near; they inherit
    this process's CPUs, so it gets every CPU back first (meter() pins them again)."""
    stack = bench.stack
    local = f"redis://127.0.0.1:{stack.ports.session_store}/0"
    bench.release()
    stack.reconfigure(60.0, **{**settings, "SESSION_STORE_URL": local, **extra})


def stores_of(stack: Stack) -> dict[str, StoreAddress]:
    if stack.cluster is not None:  # a failing shard must not fail the window's reading
        return {"data_store": StoreAddress("127.0.0.1", stack.ports.data_store)}
    return {
        name: StoreAddress("127.0.0.1", port)
        for name, port in (
            ("session_store", stack.ports.session_store),
            ("data_store", stack.ports.data_store),
        )
    }


def meter(bench: Bench, stack: Stack) -> Meter:
    """Windows on `stack`'s gateway: every process this run started on the system's CPUs, the
    load on its own, the idle baseline of this start of the services measured."""
    isolation = bench.pin_system()
    pids: dict[str, list[int]] = {}
    for name in stack.service_names:
        process = stack.components[name].process
        if process is not None:
            pids.setdefault(cpu.group_of(name), []).append(process.pid)
    services = {name: stack.url(name) for name in stack.service_names}
    readers = servers.Servers(services, stores_of(stack))
    idle, idle_services = at_rest(readers, pids, 0.5)
    return Meter(
        stack.gateway_url,
        BY_NAME,
        bench.usernames,
        readers,
        pids,
        idle,
        idle_services,
        bench.workers,
        isolation,
    )


def beside(
    window: Callable[[], Window], gateway_url: str, lead: float, during: Callable[[], T]
) -> tuple[Window, T]:
    """Run `window` and, once the gateway has answered `lead` more requests (the load is on,
    past its settle), `during` beside it."""
    with ThreadPoolExecutor(1) as pool:
        running: Future[Window] = pool.submit(window)
        start = servers.answered(gateway_url)
        deadline = time.monotonic() + START_LIMIT_S
        while servers.answered(gateway_url) - start < lead:
            if running.done() or time.monotonic() > deadline:
                running.result(timeout=1)  # its error, if it failed
                raise RuntimeError("the window's load did not reach the gateway in time")
            time.sleep(POLL_S)
        found = during()
        return running.result(), found


def counted(window: Window, seconds: float) -> int:
    """Requests a window counted (2xx answers and failures) over its measured `seconds`."""
    return round(window["served_rps"] * seconds) + window["failures"]


# -- nginx, the reference proxy ---------------------------------------------------------------


def proxy_window(
    workers: Workers,
    isolation: Isolation | None,
    url: str,
    headers: Mapping[str, str],
    rate: float,
    seconds: float,
    pid: int,
) -> ProxyFigure:
    """Open-model load on one proxy; the proxy process's CPU from the first send to the last
    answer, its idle rate (measured just before) taken out, per request answered."""
    rest = cpu.process_cpu_seconds(pid)
    rested = time.monotonic()
    time.sleep(0.5)  # the length of the idle measurement, not a wait for something
    idle_rate = (cpu.process_cpu_seconds(pid) - rest) / (time.monotonic() - rested)
    plan = Plan(
        targets=(Target(url=url, headers=dict(headers)),),
        schedule=Schedule(rate=rate, seconds=seconds),
        connections=64,
        timeout=5.0,
        isolation=isolation,
    )
    start: list[tuple[float, float]] = []
    window = workers.run(
        plan, lambda _: start.append((time.monotonic(), cpu.process_cpu_seconds(pid)))
    )
    spent = (
        cpu.process_cpu_seconds(pid) - start[0][1] - idle_rate * (time.monotonic() - start[0][0])
    )
    answered = sum(window.answered.values())
    failures = answered - window.answered.get("2xx", 0) + sum(window.errors.values())
    return {
        "requests": answered + sum(window.errors.values()),
        "failures": failures + window.unsent,
        "served_rps": window.served_rps,
        "p50_ms": window.latency.p50_ms,
        "p99_ms": window.latency.p99_ms,
        "cpu_us_per_request": round(max(spent, 0.0) / max(answered, 1) * 1e6, 1),
    }


def _listening(url: str) -> bool:
    return get_status(url + "/", {}, timeout=0.5)[0] != 0


def nginx_reference(bench: Bench, probe_user: str) -> NginxReference:
    """nginx (one process, no daemon, its files in the run's directory) proxying GET /orders
    to orders-1, beside the gateway (which balances over every orders replica and checks the
    credential at the edge) at the same offered rate, nginx first then the gateway."""
    if shutil.which("nginx") is None:
        raise Skipped("nginx is not on PATH (Debian: apt-get install nginx-light)")
    o, stack = bench.options, bench.stack
    prefix = bench.workdir / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=prefix, upstream=stack.ports.orders[0], port=port))
    argv = ["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    process = spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_LIMIT_S
        while not _listening(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not listen (exit code {process.poll()})")
            time.sleep(POLL_S)
        headers = Gateway(stack.gateway_url).login(JWT_PUSH.credential, probe_user)
        isolation = bench.pin_system()  # nginx too: it is this run's child
        gateway = stack.components["gateway"].process
        assert gateway is not None
        proxies = {
            name: proxy_window(
                bench.workers, isolation, base + ORDERS, headers, o.nginx_rps, o.nginx_s, pid
            )
            for name, base, pid in (
                ("nginx", url, process.pid),
                ("gateway", stack.gateway_url, gateway.pid),
            )
        }
    finally:
        stop_process(process, 5)
    nginx_cpu = proxies["nginx"]["cpu_us_per_request"]
    figure: NginxReference = {
        "offered_rps": o.nginx_rps,
        "seconds": o.nginx_s,
        "proxies": proxies,
        "ratio": (
            round(proxies["gateway"]["cpu_us_per_request"] / nginx_cpu, 2) if nginx_cpu else None
        ),
        "note": "nginx: 1 process (master_process off), upstream keep-alive, no access log, to "
        "orders-1; the gateway: its own settings (jwt-push), to every orders replica; the "
        f"credential a {JWT_PUSH.name} bearer token",
    }
    bench.say(
        "long: nginx "
        + ", ".join(f"{n} {p['cpu_us_per_request']:.0f} us/request" for n, p in proxies.items())
    )
    return figure


# -- key rotation under load ------------------------------------------------------------------


def kid_of(keys_dir: Path) -> str:
    return keylib.thumbprint(keylib.load_public_pem((keys_dir / "public.pem").read_bytes()))


def rotate_keys(keys_dir: Path) -> tuple[str, str]:
    """A new signing key; the old public key stays published as public-<kid>.pem (auth's key
    ring serves every public-*.pem in its JWKS), so tokens it signed verify until they expire."""
    old = kid_of(keys_dir)
    shutil.copyfile(keys_dir / "public.pem", keys_dir / f"public-{old}.pem")
    (keys_dir / "private.pem").unlink()
    (keys_dir / "public.pem").unlink()
    keylib.ensure_keypair(keys_dir)
    return old, kid_of(keys_dir)


def verifies_jwt(mode: Mode) -> bool:
    """Its requests carry a JWT to some verifier: a JWT design, or the hybrid's inner token."""
    return mode.credential.kind == "jwt" or mode.exchanges


def key_rotation(bench: Bench, probe_user: str) -> Rotation:
    """For each JWT design that runs on the services' present settings: a window whose tokens
    were signed before auth restarts with a new key in its middle; then, for each, a window
    with tokens of the new key (the verifiers meet the new kid under load and fetch it)."""
    o, stack = bench.options, bench.stack
    designs = [m for m in bench.modes if verifies_jwt(m) and m.settings == JWT_PUSH.settings] or [
        JWT_PUSH
    ]
    gateway = Gateway(stack.gateway_url)
    old_credentials = {m.name: gateway.login(m.credential, probe_user) for m in designs}
    first_kid = kid_of(stack.keys_dir)
    restarts: list[float] = []
    windows: list[RotationWindow] = []

    meters = meter(bench, stack)

    def rotate() -> None:
        began = time.perf_counter()
        rotate_keys(stack.keys_dir)
        stack.restart("auth")
        restarts.append(round((time.perf_counter() - began) * 1000, 1))
        auth = stack.components["auth"].process
        if auth is not None and meters.isolation is not None:  # not on the load's CPU
            pin([auth.pid], meters.isolation.system_cpus)

    for mode in designs:
        meters.credentials(mode.name)  # the load's tokens: signed by the key about to go
        window, _ = beside(
            lambda m=mode, load=meters: load.window(  # type: ignore[misc]
                "rotation", m.name, ORDERS, o.rotation_rps, o.rotation_s, o.settle_s
            ),
            stack.gateway_url,
            o.rotation_rps * (o.settle_s + 0.5),
            rotate,
        )
        windows.append(_rotation_window(mode, "old", window, o.rotation_s))
        meters = meter(bench, stack)  # auth's process is a new one: pinned, counted anew
    meters.forget()  # log in again: the new key's tokens
    for mode in designs:
        window = meters.window(
            "rotation", mode.name, ORDERS, o.rotation_rps, o.rotation_s, o.settle_s
        )
        windows.append(_rotation_window(mode, "new", window, o.rotation_s))
    new_credentials = {m.name: gateway.login(m.credential, probe_user) for m in designs}
    inside = {n: stack.url(n) for n in stack.service_names if not n.startswith("relay")}

    def statuses(credentials: Mapping[str, Mapping[str, str]]) -> dict[str, int]:
        return {
            f"{m.name} {hop.name}": get_status(hop.url, hop.headers)[0]
            for m in designs
            for hop in hops_of(stack.gateway_url, inside, m, credentials[m.name])
        }

    rotation: Rotation = {
        "designs": [m.name for m in designs],
        "old_kid": first_kid,
        "new_kid": kid_of(stack.keys_dir),
        "auth_restart_ms": restarts,
        "windows": windows,
        "old_token": statuses(old_credentials),
        "new_token": statuses(new_credentials),
        "jwks_fetches": servers.requests_on_route(
            get_text(stack.auth_url + "/metrics"), "/.well-known/jwks.json"
        ),
        "cooldown_s": float(stack.env.get("JWKS_COOLDOWN_SECONDS", "0") or 0),
    }
    bench.say(
        "long: rotation "
        + ", ".join(f"{w['design']} ({w['token']}) {w['failures']} failed" for w in windows)
    )
    return rotation


def _rotation_window(mode: Mode, token: str, window: Window, seconds: float) -> RotationWindow:
    return {
        "design": mode.name,
        "token": token,
        "offered_rps": window["offered_rps"],
        "requests": counted(window, seconds),
        "failures": window["failures"],
        "p99_ms": window["p99_ms"],
    }


# -- the session store as a cluster, a primary's failure --------------------------------------


def primaries(cluster: RedisClusterServers) -> list[int]:
    """The ports of the nodes that are primaries now."""
    found = []
    for node in cluster.nodes:
        with redis_probe(node.port, 2.0) as client:
            if client.execute_command("ROLE")[0] in (b"master", "master"):
                found.append(node.port)
    return found


def _sid(headers: Mapping[str, str]) -> str:
    cookie = next(p for p in headers["Cookie"].split("; ") if p.startswith("sid="))
    return cookie.removeprefix("sid=")


def _commands(ports: Sequence[int]) -> dict[int, float]:
    return {p: servers.store_counters(StoreAddress("127.0.0.1", p))[0] for p in ports}


def shard_throughput(workdir: Path, cluster: RedisClusterServers, requests: int) -> Shards | None:
    """redis-benchmark GET/SET on a fresh single redis-server, then on the cluster."""
    single = RedisServer(workdir / "single-shard")
    single.directory.mkdir(parents=True, exist_ok=True)
    try:
        single.start()
        one = servers.redis_benchmark(single.port, requests, BENCH_CLIENTS)
    finally:
        single.stop()
    many = servers.redis_benchmark(cluster.nodes[0].port, requests, BENCH_CLIENTS, cluster=True)
    if one is None or many is None:
        return None
    single_rps, cluster_rps = min(one.values()), min(many.values())
    return {
        "command": f"redis-benchmark -t get,set -n {requests} -c {BENCH_CLIENTS} [--cluster]",
        "single_rps": single_rps,
        "cluster_rps": cluster_rps,
        "ratio": round(cluster_rps / single_rps, 2) if single_rps else 0.0,
    }


def cluster_failover(bench: Bench, probe_user: str) -> Failover:
    """A second stack (the run's own stays up, idle), its session store 3 primaries and 3
    replicas: the session design's load on it, then the same load while the primary that
    holds a probe session is killed."""
    if shutil.which("redis-cli") is None:
        raise Skipped("redis-cli is not on PATH: no Redis Cluster can be created")
    o = bench.options
    bench.release()
    ports = Ports.free()
    env = {
        **bench.stack.env,  # the run's own: log level, cheap argon2, JWKS cooldown
        **SESSION.settings,
        "JWT_JWKS_URL": f"http://127.0.0.1:{ports.auth}/.well-known/jwks.json",
    }
    env.pop("SESSION_STORE_URL", None)  # the cluster's, from the stack
    log = (bench.workdir / "cluster-stack.log").open("w")
    stack = Stack(
        ports=ports,
        workdir=bench.workdir / "cluster-stack",
        keys_dir=bench.workdir / "cluster-keys",
        log=log,
        env=env,
        session_cluster=True,
    )
    try:
        stack.start()
        assert stack.cluster is not None
        return _failover(bench, stack, stack.cluster, probe_user, o.failover_rps)
    finally:
        stack.stop()
        log.close()


def _failover(
    bench: Bench, stack: Stack, cluster: RedisClusterServers, probe_user: str, rate: float
) -> Failover:
    o = bench.options
    gateway = Gateway(stack.gateway_url)
    for user in [*bench.usernames, probe_user]:
        gateway.ensure_user(user)
    shards = primaries(cluster)
    load = meter(bench, stack)
    before = _commands(shards)
    steady = load.window("cluster", SESSION.name, ORDERS, rate, o.window_s, o.settle_s)
    after = _commands(shards)
    total = sum(after[p] - before[p] for p in shards) or 1.0
    throughput = shard_throughput(bench.workdir, cluster, o.store_bench_requests)
    cookies = [gateway.login(SESSION.credential, probe_user) for _ in range(PROBE_SESSIONS)]
    bearer = gateway.login(JWT_PUSH.credential, probe_user)
    with RedisCluster(host="127.0.0.1", port=shards[0], socket_timeout=2) as client:
        owners = [int(client.get_node_from_key(session_key(_sid(c))).port) for c in cookies]
    victim_port = owners[0]
    on_victim = [c for c, port in zip(cookies, owners, strict=True) if port == victim_port]
    with redis_probe(victim_port, 5.0) as primary:
        primary.execute_command("WAIT", 1, 2000)  # the replica has every session first
    victim = next(n for n in cluster.nodes if n.port == victim_port)
    sessions: dict[str, int] = {}
    jwts: dict[str, int] = {}

    def kill_and_wait() -> float | None:
        victim.stop()
        killed = time.monotonic()
        while time.monotonic() - killed < RECOVERY_LIMIT_S:
            status = gateway.status(on_victim[0], timeout=2)[0]
            sessions[str(status)] = sessions.get(str(status), 0) + 1
            jwt_status = str(gateway.status(bearer, timeout=2)[0])
            jwts[jwt_status] = jwts.get(jwt_status, 0) + 1
            if status == 200:
                return round(time.monotonic() - killed, 2)
            time.sleep(POLL_S)
        return None

    bench.say(f"long: failover: killing the primary on port {victim_port} under load")
    window, recovered = beside(
        lambda: load.window("failover", SESSION.name, ORDERS, rate, o.failover_s, o.settle_s),
        stack.gateway_url,
        rate * (o.settle_s + 0.5),
        kill_and_wait,
    )
    back = sum(gateway.status(c, timeout=2)[0] == 200 for c in on_victim)
    figure: Failover = {
        "primaries": len(shards),
        "replicas": len(cluster.nodes) - len(shards),
        "design": SESSION.name,
        "offered_rps": rate,
        "steady": {
            "served_rps": steady["served_rps"],
            "requests": counted(steady, o.window_s),
            "failures": steady["failures"],
            "p50_ms": steady["p50_ms"],
            "p99_ms": steady["p99_ms"],
        },
        "share": {str(p): round((after[p] - before[p]) / total, 3) for p in shards},
        "seconds": o.failover_s,
        "requests": counted(window, o.failover_s),
        "failures": window["failures"],
        "p99_ms": window["p99_ms"],
        "victim": victim_port,
        "sessions_on_victim": len(on_victim),
        "sessions_back": back,
        "recovered_s": recovered,
        "session_statuses": sessions,
        "jwt_statuses": jwts,
        "throughput": throughput,
    }
    bench.say(
        f"long: failover recovered after {recovered} s; {window['failures']} of "
        f"{figure['requests']} requests failed; probe {sessions}, JWT {jwts}"
    )
    return figure


# -- traced per-hop attribution ---------------------------------------------------------------


def _checks(stack: Stack) -> dict[str, tuple[float, float]]:
    """Per hop (orders-1 and orders-2 are `orders`), seconds spent verifying and checks."""
    out: dict[str, tuple[float, float]] = {}
    for name in stack.service_names:
        counters = servers.scrape_service(get_text(stack.url(name) + "/metrics"))
        total, count = out.get(cpu.group_of(name), (0.0, 0.0))
        out[cpu.group_of(name)] = (total + counters.auth_sum, count + counters.auth_count)
    return out


def traced_windows(bench: Bench) -> list[TracedDesign]:
    """One window per design on services restarted with tracing on. Tracing stays on to the
    end of the run: these are its last windows on this stack."""
    o, stack = bench.options, bench.stack
    designs = select(o.traced_designs) if o.traced_designs else bench.modes
    stores = {stack.ports.session_store: "session_store", stack.ports.data_store: "data_store"}
    found: list[TracedDesign] = []
    with collecting() as collector:
        tracing = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": str(traced.EXPORT_DELAY_MS),
        }
        for group in settings_groups(designs):
            restart(bench, group[0].settings, **tracing)
            load = meter(bench, stack)
            for mode in group:
                load.credentials(mode.name)  # the logins stay out of the spans read
                before = _checks(stack)
                collector.clear()
                window = load.window(
                    "traced", mode.name, ORDERS, o.traced_rps, o.traced_s, o.settle_s
                )
                spans = traced.settled(collector)
                after = _checks(stack)
                check_us = {
                    hop: round((total - before[hop][0]) / (count - before[hop][1]) * 1e6, 1)
                    for hop, (total, count) in after.items()
                    if hop in before and count > before[hop][1]
                }
                hops = traced.attribute(spans, stores, check_us)
                found.append(
                    {
                        "design": mode.name,
                        "offered_rps": o.traced_rps,
                        "requests": counted(window, o.traced_s),
                        "failures": window["failures"],
                        "p50_ms": window["p50_ms"],
                        "spans": len(spans),
                        "traces": len({r.span.trace_id for r in spans}),
                        "hops": hops,
                    }
                )
                bench.say(f"long: traced {mode.name}: {len(spans)} spans, hops {', '.join(hops)}")
    return found
