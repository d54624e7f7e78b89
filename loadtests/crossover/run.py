"""One crossover run from start to report: the stack, the configurations, the windows, the
experiments (crossover/phases.py), the files. Everything it starts is stopped on the way out,
whatever happens."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from devstack.stack import Ports, Stack
from loadtests.bench.client import Gateway
from loadtests.crossover import knee, log
from loadtests.crossover.netns import remote_store
from loadtests.crossover.phases import PROBE_USER, USER_PREFIX, Run
from loadtests.crossover.plan import Options, Progress, configs, tasks
from loadtests.crossover.processes import SideGateway
from loadtests.crossover.references import shard_capacity
from loadtests.crossover.results import CrossoverResults, DesignInfo, Shards, dump
from loadtests.crossover.servers import Idle
from loadtests.measure.run import CHEAP_ARGON2
from loadtests.model import distance_fit, hop_fits
from loadtests.modes import Mode, select, settings_groups


def _design_info(mode: Mode) -> DesignInfo:
    return {
        "name": mode.name,
        "user_class": mode.user_class,
        "credential": mode.credential.name,
        "kind": mode.credential.kind,
        "carrier": mode.credential.carrier,
        "settings": dict(mode.settings),
    }


def measure(
    options: Options, workdir: Path, say: Callable[[str], None], cleanup: contextlib.ExitStack
) -> CrossoverResults:
    started = dt.datetime.now(dt.UTC)
    began = time.monotonic()
    modes = select(options.designs)
    groups = settings_groups(modes)
    say(
        f"{len(modes)} designs ({', '.join(m.name for m in modes)}) in {len(groups)} "
        f"settings group(s); {'--long' if options.long else 'default'} run"
    )
    shards: Shards | None = shard_capacity(workdir, options.shard_requests)
    store = cleanup.enter_context(remote_store(workdir / "remote"))
    say(f"session store at a distance: {store.method}: {store.note}")
    plan = configs(groups, options, store.method == "netem")
    progress = Progress(tasks(plan, options), say)
    say(
        f"plan: {len(plan)} configurations of the services, {len(progress.planned)} tasks, "
        f"estimated {progress.estimated_s / 60:.1f} min"
    )
    progress.finish(
        "shards",
        "per-shard capacity: "
        + (
            f"{shards['per_shard_ops']:,.0f} ops/s (redis-benchmark)"
            if shards
            else "no redis-benchmark"
        ),
    )
    ports = Ports.free()
    jwks = f"http://127.0.0.1:{ports.auth}/.well-known/jwks.json"
    base_env = {
        "LOG_LEVEL": "WARNING",
        **CHEAP_ARGON2,
        "JWT_JWKS_URL": jwks,
        "JWKS_COOLDOWN_SECONDS": f"{options.jwks_cooldown_s:g}",
    }
    stack_log = (workdir / "stack.log").open("w")
    cleanup.callback(stack_log.close)
    stack = Stack(
        ports=ports,
        workdir=workdir / "stack",
        keys_dir=workdir / "keys",
        log=stack_log,
        env=dict(base_env),
    )
    cleanup.callback(stack.stop)
    side = SideGateway((workdir / "gateway-edgeoff.log").open("w"))
    cleanup.callback(side.log.close)
    cleanup.callback(side.stop)
    run = Run(options, modes, workdir, say, store, stack, side, progress)
    stack.env.update(run.settings_of(plan[0]))
    stack.start()
    side.start(stack)
    gateway = Gateway(stack.gateway_url)
    for index in range(options.users):
        gateway.ensure_user(f"{USER_PREFIX}-{index}")
    gateway.ensure_user(PROBE_USER)
    run.idle = Idle.measure(run.servers(plan[0]), 2.0)
    progress.finish("start", f"stack up on free ports, {options.users} accounts, idle CPU measured")
    for index, config in enumerate(plan):
        if index:
            wanted = run.settings_of(config)
            changed = {k: v for k, v in wanted.items() if stack.env.get(k) != v}
            say(
                f"configuration {index + 1}/{len(plan)} ({config.purpose}: "
                f"{', '.join(config.designs)}): restarting the services"
                + (f" with {' '.join(f'{k}={v}' for k, v in changed.items())}" if changed else "")
            )
            stack.reconfigure(60.0, **wanted)
            side.start(stack)
            progress.finish(f"{index}:restart", "services restarted")
        run.configuration(index, config, run.servers(config))
    hop_fit = {name: hop_fits(points) for name, points in run.hops.items()}
    distance = {name: distance_fit(points) for name, points in run.distance.items()}
    finished = dt.datetime.now(dt.UTC)
    return {
        "version": 1,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": sys.platform,
            "load_average": [round(v, 2) for v in os.getloadavg()],
        },
        "options": {
            k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
            for k, v in asdict(options).items()
        },
        "designs": [_design_info(m) for m in modes],
        "setup": {
            "configurations": [
                {"designs": list(c.designs), "purpose": c.purpose, "remote_store": c.remote_store}
                for c in plan
            ],
            "argon2": CHEAP_ARGON2,
            "keys": f"verifiers take keys from auth's JWKS (JWT_JWKS_URL), refetch cooldown "
            f"{options.jwks_cooldown_s:g} s",
            "locust": f"{options.users} users per design, {options.processes} worker process(es)",
            "one_hop": "a second gateway with GATEWAY_EDGE_AUTH=0 beside the stack's",
        },
        "idle_cpu_ms_per_s": {k: round(v * 1000, 2) for k, v in run.idle.rates.items()},
        "knee": knee.summarize(options, modes, run.steps),
        "hops": {"rate_rps": options.hop_rps, "designs": run.hops, "fits": hop_fit},
        "distance": {
            "method": "netem" if store.method == "netem" else "proxy",
            "method_note": store.note,
            "namespace": store.namespace,
            "rate_rps": options.distance_rps,
            "rtts_ms": list(options.rtts_ms),
            "designs": run.distance,
            "fits": distance,
        },
        "revocation": run.revocation,
        "rotation": run.rotation,
        "shards": shards,
        "nginx": run.nginx,
        "progress": {
            "estimated_s": round(progress.estimated_s, 1),
            "wall_s": round(time.monotonic() - began, 1),
        },
        "notes": run.notes,
    }


def run(options: Options, say: Callable[[str], None] = log) -> Path:
    """Measure, then write results.json and the report into options.out; returns it."""
    from loadtests.crossover import report  # matplotlib only once there is something to draw

    workdir = Path(tempfile.mkdtemp(prefix="authscale-crossover-"))
    out = options.out
    began = time.monotonic()
    logs = out / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    try:
        with contextlib.ExitStack() as cleanup:
            results = measure(options, workdir, say, cleanup)
    except BaseException:
        say(f"the run failed; its logs are in {logs}")
        raise
    finally:
        logs.mkdir(parents=True, exist_ok=True)
        for path in workdir.glob("*.log"):
            shutil.copyfile(path, logs / path.name)
        shutil.rmtree(workdir, ignore_errors=True)
    dump(results, out / "results.json")
    report.write(results, out)
    results["progress"]["wall_s"] = round(time.monotonic() - began, 1)
    dump(results, out / "results.json")
    progress = results["progress"]
    say(f"done in {progress['wall_s']:.0f} s (estimated {progress['estimated_s']:.0f} s)")
    return out
