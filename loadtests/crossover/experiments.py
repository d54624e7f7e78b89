"""The crossover's experiments beside the load windows: revocation lag per hop, key rotation
under load, the nginx reference and the store's per-shard capacity."""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from http.cookies import SimpleCookie
from pathlib import Path

import jwt
import psutil
from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import RedisServer, Stack, free_port, spawn
from loadtests.bench.client import Gateway, get_status, get_text
from loadtests.bench.experiments import revocation_hops, revocation_sample
from loadtests.bench.scrape import Target
from loadtests.crossover import protocol
from loadtests.crossover.driver import LocustDriver
from loadtests.crossover.results import (
    HopLag,
    NginxReference,
    RevocationLag,
    Rotation,
    Shards,
)
from loadtests.crossover.servers import Idle, Servers
from loadtests.modes import Mode
from services.common import keys as keylib

# -- revocation lag -----------------------------------------------------------------------------


def nearest_rank(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)], 2)


def access_token(headers: Mapping[str, str]) -> str | None:
    """The JWT a client's headers carry: the bearer token, or the `at` cookie."""
    bearer = headers.get("Authorization", "")
    if bearer.startswith("Bearer "):
        return bearer.removeprefix("Bearer ")
    jar: SimpleCookie = SimpleCookie()
    jar.load(headers.get("Cookie", ""))
    return jar["at"].value if "at" in jar else None


def token_lifetime_s(headers: Mapping[str, str]) -> float | None:
    token = access_token(headers)
    if token is None:
        return None
    claims = jwt.decode(token, options={"verify_signature": False})
    return float(claims["exp"]) - float(claims["iat"])


def revocation_lags(
    gateway_url: str,
    services: Mapping[str, str],
    mode: Mode,
    username: str,
    samples: int,
    limit_s: float,
) -> RevocationLag:
    """`samples` logouts, each polled at every hop at once (loadtests.bench.experiments
    .revocation_sample): per hop, p50/p99/max of the time from the logout's answer until the
    hop refused the old credential. A hop still accepting it at `limit_s` ends the sampling:
    the credential lives until it expires."""
    gateway = Gateway(gateway_url)
    target = Target(gateway_url, dict(services), {})
    taken: list[dict[str, float | None]] = []
    errors: list[str] = []
    until_exp = False
    for _ in range(samples):
        try:
            sample = revocation_sample(gateway, target, mode, username, limit_s)
        except (AssertionError, OSError) as error:  # a hop refused before the logout, ...
            errors.append(f"{type(error).__name__}: {error}"[:200])
            if len(errors) > 3:
                break
            continue
        taken.append({hop: lag.refused_ms for hop, lag in sample.items()})
        if any(lag.refused_ms is None for lag in sample.values()):
            until_exp = True
            break
    hops: dict[str, HopLag] = {}
    for name in taken[0] if taken else []:
        refused = [s[name] for s in taken if s.get(name) is not None]
        values = [v for v in refused if v is not None]
        hops[name] = {
            "p50_ms": nearest_rank(values, 0.50),
            "p99_ms": nearest_rank(values, 0.99),
            "max_ms": round(max(values), 2) if values else None,
            "refused": len(values),
            "never_refused": len(taken) - len(values),
        }
    lifetime = None
    if mode.credential.kind == "jwt":
        lifetime = token_lifetime_s(gateway.login(mode.credential, username))
    return {
        "samples": len(taken),
        "limit_s": limit_s,
        "jwt_revocation": mode.revocation,
        "until_exp": until_exp,
        "token_lifetime_s": lifetime,
        "hops": hops,
        "errors": errors,
    }


# -- key rotation under load --------------------------------------------------------------------


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


def requests_on_route(metrics_text: str, route: str) -> int:
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "http_requests_total" and sample.labels.get("route") == route:
                total += sample.value
    return int(total)


def hop_statuses(
    stack: Stack, modes: Sequence[Mode], credentials: Mapping[str, Mapping[str, str]]
) -> dict[str, int]:
    """`design hop` -> the status one GET got with that design's credential at that hop."""
    target = Target(stack.gateway_url, {n: stack.url(n) for n in stack.service_names}, {})
    out: dict[str, int] = {}
    for mode in modes:
        for hop in revocation_hops(target, mode, credentials[mode.name]):
            out[f"{mode.name} {hop.name}"] = get_status(hop.url, hop.headers)[0]
    return out


def key_rotation(
    driver: LocustDriver,
    stack: Stack,
    servers: Servers,
    idle: Idle,
    modes: Sequence[Mode],
    username: str,
    keys_dir: Path,
    rate: float,
    seconds: float,
    settle: float,
    cooldown_s: float,
) -> Rotation:
    """Every design of `modes` under load (their own task mix) while auth restarts with a new
    signing key; then every user logs in again (new tokens, the new kid). Verifiers take keys
    from auth's JWKS: the first token with the new kid makes each refetch it once."""
    gateway = Gateway(stack.gateway_url)
    verifying = [m for m in modes if m.credential.kind == "jwt" or m.exchanges]
    old_credentials = {m.name: gateway.login(m.credential, username) for m in verifying}
    kids: list[str] = []
    restart_ms: list[float] = []

    def during(control: protocol.Control) -> None:
        time.sleep(min(1.0, seconds / 4))
        started = time.perf_counter()
        kids.extend(rotate_keys(keys_dir))
        stack.restart("auth")
        restart_ms.append(round((time.perf_counter() - started) * 1000, 1))
        time.sleep(1.2)  # the gateway's health check (every second) has seen auth come back
        driver.update({**control, "relogin_at": time.time()})

    window = driver.measure(
        servers,
        idle,
        [m.name for m in modes],
        "mix",
        rate,
        max(seconds, 4.0),
        settle,
        during=during,
    )
    old_kid, new_kid = kids
    new_credentials = {m.name: gateway.login(m.credential, username) for m in verifying}
    old_status = hop_statuses(stack, verifying, old_credentials)
    new_status = hop_statuses(stack, verifying, new_credentials)
    fetches = requests_on_route(get_text(stack.auth_url + "/metrics"), "/.well-known/jwks.json")
    segment = window.segment
    ok = (
        segment["failures"] == 0
        and all(v == 200 for v in old_status.values())
        and all(v == 200 for v in new_status.values())
        and old_kid != new_kid
    )
    return {
        "designs": [m.name for m in modes],
        "rate_rps": rate,
        "old_kid": old_kid,
        "new_kid": new_kid,
        "auth_restart_ms": restart_ms[0],
        "requests": segment["requests"],
        "failures": segment["failures"],
        "errors": segment["errors"],
        "relogins": True,
        "old_token": old_status,
        "new_token": new_status,
        "jwks_fetches": fetches,
        "verifiers": 1 + len(stack.ports.orders),
        "cooldown_s": cooldown_s,
        "ok": ok,
        "segment": segment,
    }


# -- nginx, the reference proxy -----------------------------------------------------------------

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


def wrk(url: str, headers: Mapping[str, str], seconds: float, connections: int) -> tuple[int, int]:
    """(requests, non-2xx answers) of one wrk run at full speed."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    done = subprocess.run(
        [*argv, url], capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    match = re.search(r"(\d+) requests in", done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    return int(match.group(1)), int(bad.group(1)) if bad else 0


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("nginx did not listen in time")


def nginx_reference(
    orders_port: int,
    proxies: Mapping[str, tuple[str, int]],
    headers: Mapping[str, str],
    seconds: float,
    connections: int,
    log: Callable[[str], None],
) -> NginxReference:
    """nginx (one process, no daemon, its files in a temporary prefix) proxying GET /orders to
    one orders replica, and each of `proxies` (name -> (base URL, pid)) answering the same
    GET, each driven by wrk at full speed in turn: each proxy process's own CPU per request."""
    result: NginxReference = {
        "available": False,
        "note": "",
        "tool": "wrk",
        "seconds": seconds,
        "connections": connections,
        "requests": {},
        "rps": {},
        "cpu_us_per_request": {},
        "ratio": None,
        "ratio_edge_off": None,
    }
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        result["note"] = f"{' and '.join(missing)} not on PATH: no reference measured"
        return result
    prefix = Path(tempfile.mkdtemp(prefix="authscale-nginx-"))
    port = free_port()
    (prefix / "nginx.conf").write_text(NGINX_CONF.format(d=prefix, upstream=orders_port, port=port))
    argv = ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    process = spawn(
        [*argv, "-e", str(prefix / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = "/orders?limit=10"
    try:
        _wait_port(port, process)
        targets = {"nginx": (f"http://127.0.0.1:{port}", process.pid), **proxies}
        bad_total = 0
        for name, (base, pid) in targets.items():
            before = _cpu(pid)
            count, bad = wrk(base + path, headers, seconds, connections)
            spent = _cpu(pid) - before
            bad_total += bad
            result["requests"][name] = count
            result["rps"][name] = round(count / max(1, round(seconds)), 1)
            result["cpu_us_per_request"][name] = round(spent / max(count, 1) * 1e6, 1)
            log(f"nginx reference: {name} {count} requests, {bad} not 2xx")
        cpu = result["cpu_us_per_request"]
        if cpu.get("nginx"):
            if "gateway" in cpu:
                result["ratio"] = round(cpu["gateway"] / cpu["nginx"], 2)
            if "gateway-edgeoff" in cpu:
                result["ratio_edge_off"] = round(cpu["gateway-edgeoff"] / cpu["nginx"], 2)
        result["available"] = True
        result["note"] = (
            "nginx 1 process (master_process off), upstream keep-alive, to one orders replica; "
            "the gateway balances over every replica; wrk -t1 at full speed"
            + (f"; {bad_total} answers were not 2xx" if bad_total else "")
        )
    except (RuntimeError, OSError, psutil.Error) as error:
        result["note"] = f"nginx reference failed: {error}"
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        shutil.rmtree(prefix, ignore_errors=True)
    return result


# -- per-shard capacity -------------------------------------------------------------------------


def shard_capacity(workdir: Path, requests: int, clients: int = 50) -> Shards | None:
    """redis-benchmark GET and SET against a fresh local redis-server: one shard's ops/s."""
    if shutil.which("redis-benchmark") is None:
        return None
    directory = workdir / "shard-bench"
    directory.mkdir(parents=True, exist_ok=True)
    server = RedisServer(directory)
    server.start()
    try:
        argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port), "-t", "get,set"]
        argv += ["-n", str(requests), "-c", str(clients), "--csv", "-q"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    finally:
        server.stop()
    rps: dict[str, float] = {}
    for line in done.stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) > 1 and cells[0] in ("GET", "SET"):
            rps[cells[0]] = float(cells[1])
    if set(rps) != {"GET", "SET"}:
        return None
    return {
        "tool": "redis-benchmark",
        "get_rps": rps["GET"],
        "set_rps": rps["SET"],
        "per_shard_ops": min(rps.values()),
        "clients": clients,
        "requests": requests,
    }
