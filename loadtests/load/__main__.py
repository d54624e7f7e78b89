"""Open-model load by hand: `python -m loadtests.load URL --rate 2000 --seconds 10`.

Prints the window as JSON (latency from each request's intended start, the generator's own CPU,
whether it limited the window). `--system-pid` pins those processes to the CPUs the generator
does not use.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from loadtests.load.affinity import isolate
from loadtests.load.generator import Plan, run_window_sync
from loadtests.load.schedule import Schedule
from loadtests.load.worker import Target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.load", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--poisson", action="store_true", help="Poisson arrivals, not constant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--connections", type=int, default=100, help="per process")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--system-pid", type=int, action="append", default=[])
    args = parser.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    plan = Plan(
        targets=(Target(url=args.url, headers={k.strip(): v.strip() for k, v in headers.items()}),),
        schedule=Schedule(
            rate=args.rate,
            seconds=args.seconds,
            kind="poisson" if args.poisson else "constant",
            seed=args.seed,
        ),
        processes=args.processes,
        connections=args.connections,
        timeout=args.timeout,
        isolation=isolate(args.system_pid, args.processes),
    )
    window = run_window_sync(plan)
    shown = {
        k: v for k, v in dataclasses.asdict(window).items() if k not in ("histogram", "traces")
    }
    print(json.dumps(shown, indent=2))


if __name__ == "__main__":
    main()
