"""The reference points the crossover compares against: nginx proxying the same GET as the
gateway (the gateway's CPU per request against a plain reverse proxy's), beside them a bare
forward on aiohttp's server and the gateway's upstream client (loadtests/crossover/floor.py:
what the gateway would pay without its fast path), and one session-store shard's capacity
(redis-benchmark), from which the model counts shards."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil

from devstack.processes import free_port, spawn, stop_process
from devstack.stores import RedisServer
from loadtests.bench.stores import redis_benchmark
from loadtests.crossover.processes import wait_until
from loadtests.crossover.results import NginxReference, Shards

# -- nginx, the reference proxy -----------------------------------------------------------------

FLOOR = "aiohttp-floor"  # the bare forward on aiohttp's server and the upstream client

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


def _cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of a process: in all, and in the kernel."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system), float(times.system)


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def nginx_reference(
    orders_port: int,
    proxies: Mapping[str, tuple[str, int]],
    headers: Mapping[str, str],
    seconds: float,
    connections: int,
    log: Callable[[str], None],
    rounds: int = 2,
) -> NginxReference:
    """nginx (one process, no daemon, its files in a temporary prefix) proxying GET /orders to
    one orders replica, the bare forward (FLOOR) to the same replica, and each of
    `proxies` (name -> (base URL, pid)) answering the same GET, each driven by wrk at full speed
    in turn, in `rounds` rounds (each in the reverse order of the one before): each proxy
    process's own CPU per request in its least disturbed round (another process busy on the
    machine only ever adds to it; one 2 s window was once 4.6x its usual figure). A floor that
    answered anything but 2xx is left out (it did not do the same work)."""
    result: NginxReference = {
        "available": False,
        "note": "",
        "tool": "wrk",
        "seconds": seconds,
        "connections": connections,
        "rounds": rounds,
        "requests": {},
        "rps": {},
        "cpu_us_per_request": {},
        "cpu_us_rounds": {},
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
    floor_port = free_port()
    upstream = f"http://127.0.0.1:{orders_port}"
    floor = spawn(
        [sys.executable, "-m", "loadtests.crossover.floor", str(floor_port), upstream],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = "/orders?limit=10"
    try:
        if not wait_until(process, lambda: _listening(port), 10.0, 0.05, "nginx exited with {}"):
            raise RuntimeError("nginx did not listen in time")
        if not wait_until(floor, lambda: _listening(floor_port), 30.0, 0.05, "floor exited {}"):
            raise RuntimeError("the aiohttp floor did not listen in time")
        targets = {
            "nginx": (f"http://127.0.0.1:{port}", process.pid),
            FLOOR: (f"http://127.0.0.1:{floor_port}", floor.pid),
            **proxies,
        }
        bad_total = 0
        system_rounds: dict[str, list[float]] = {}
        order = list(targets)
        counts: dict[str, int] = dict.fromkeys(order, 0)
        for turn in range(max(1, rounds)):
            for name in order[:: 1 if turn % 2 == 0 else -1]:  # a copy: FLOOR may leave
                base, pid = targets[name]
                before, before_system = _cpu(pid)
                count, bad = wrk(base + path, headers, seconds, connections)
                after, after_system = _cpu(pid)
                bad_total += bad
                counts[name] += count
                per_request = round((after - before) / max(count, 1) * 1e6, 1)
                in_kernel = round((after_system - before_system) / max(count, 1) * 1e6, 1)
                result["cpu_us_rounds"].setdefault(name, []).append(per_request)
                system_rounds.setdefault(name, []).append(in_kernel)
                log(f"nginx reference: {name} {count} requests, {bad} not 2xx, {per_request} us")
                if name == FLOOR and bad:  # it answered something else: not the same request
                    order.remove(FLOOR)
                    result["cpu_us_rounds"].pop(FLOOR)
                    system_rounds.pop(FLOOR)
        result["cpu_us_system"] = {}
        for name in order:
            result["requests"][name] = counts[name]
            result["rps"][name] = round(counts[name] / max(1, round(seconds)) / max(1, rounds), 1)
            each = result["cpu_us_rounds"][name]
            least = min(range(len(each)), key=each.__getitem__)
            result["cpu_us_per_request"][name] = each[least]
            result["cpu_us_system"][name] = system_rounds[name][least]
        cpu = result["cpu_us_per_request"]
        if cpu.get("nginx"):
            if "gateway" in cpu:
                result["ratio"] = round(cpu["gateway"] / cpu["nginx"], 2)
            if "gateway-edgeoff" in cpu:
                result["ratio_edge_off"] = round(cpu["gateway-edgeoff"] / cpu["nginx"], 2)
            if FLOOR in cpu:
                result["ratio_floor"] = round(cpu[FLOOR] / cpu["nginx"], 2)
        result["available"] = True
        result["note"] = (
            "nginx 1 process (master_process off), upstream keep-alive, no access log, to one "
            f"orders replica; {FLOOR}: aiohttp's server and the gateway's upstream client "
            "forwarding to the same replica (loadtests/crossover/floor.py); "
            "the gateway balances over every replica; wrk -t1 at full speed, "
            f"{max(1, rounds)} interleaved round(s), each proxy's least disturbed one"
            + (f"; {bad_total} answers were not 2xx" if bad_total else "")
        )
    except (RuntimeError, OSError, psutil.Error) as error:
        result["note"] = f"nginx reference failed: {error}"
    finally:
        stop_process(process, 5)
        stop_process(floor, 5)
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
    try:
        server.start()
        rps = redis_benchmark(server.port, requests, clients)
    finally:
        server.stop()
    if rps is None:
        return None
    return {
        "tool": "redis-benchmark",
        "get_rps": rps["GET"],
        "set_rps": rps["SET"],
        "per_shard_ops": min(rps.values()),
        "clients": clients,
        "requests": requests,
    }
