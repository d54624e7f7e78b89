"""`python -m loadtests.bench` (what `make bench` runs): options in, report paths and table out."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Collection, Iterable
from pathlib import Path

import loadtests.bench
from loadtests.bench.experiments import DISTANCE_MODES
from loadtests.bench.run import Options, run
from loadtests.modes import BY_NAME
from services.common.settings import REPO_ROOT

# The default run's values and --long's, for the options --long changes; a value given on the
# command line is kept either way.
PRESETS: dict[str, tuple[object, object]] = {
    "duration": (6.0, 60.0),
    "rounds": (2, 3),
    "distances": ("", "0,0.5,2"),
    "distance_duration": (6.0, 30.0),
    "trace_seconds": (2.0, 10.0),
    "store_bench_requests": (40_000, 200_000),
}


def designs(
    parser: argparse.ArgumentParser, flag: str, value: str, allowed: Collection[str]
) -> tuple[str, ...]:
    """A comma-separated list of design names, each one of `allowed` (else a usage error)."""
    names = tuple(d.strip() for d in value.split(",") if d.strip())
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        parser.error(f"{flag}: not one of {', '.join(allowed)}: {', '.join(unknown)}")
    return names


def parse(argv: Iterable[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description=loadtests.bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="benchmark a running gateway (e.g. docker compose) instead")
    parser.add_argument(
        "--users", type=int, default=20, help="simulated users per phase (default 20)"
    )
    parser.add_argument(
        "--user-rps", type=float, default=15.0, help="requests/s each user offers (default 15)"
    )
    parser.add_argument(
        "--duration", type=float, help="measured seconds per phase (default 6; --long: 60)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.5, help="seconds before measuring (default 1.5)"
    )
    parser.add_argument(
        "--rounds", type=int, help="interleaved rounds of all modes (default 2; --long: 3)"
    )
    parser.add_argument(
        "--distances",
        help=(
            "added session-store round trips in ms, comma-separated, e.g. 0,0.5,2 (default none:"
            " the crossover that `make bench` runs next measures every design at 0-5 ms;"
            " --long: 0,0.5,2)"
        ),
    )
    parser.add_argument(
        "--distance-designs",
        default="",
        help=(
            "comma-separated designs of the distance phases (default:"
            f" {', '.join(m.name for m in DISTANCE_MODES)}: those that read the session store,"
            " and jwt-push as the control)"
        ),
    )
    parser.add_argument(
        "--distance-duration",
        type=float,
        help=(
            "measured seconds of each distance phase and of the cluster phase's two (default 6;"
            " --long: 30)"
        ),
    )
    parser.add_argument(
        "--long",
        action="store_true",
        help=(
            "60 s phases, 3 rounds, distance phases at 0,0.5,2 ms, 10 s traced phases, 200k"
            " redis-benchmark requests (about 30 minutes)"
        ),
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--microbench-n", type=int, default=300, help="calls per round (0 skips)")
    parser.add_argument(
        "--instruction-calls",
        type=int,
        default=100,
        help="calls per block of the session check vs GET instruction count (valgrind; 0 skips)",
    )
    parser.add_argument(
        "--revocation-samples",
        type=int,
        default=5,
        help="logout/poll samples per mode after each of its phases (default 5)",
    )
    parser.add_argument(
        "--trace-seconds",
        type=float,
        help="each design's traced phase, for per-hop attribution (default 2; --long: 10; 0 skips)",
    )
    parser.add_argument(
        "--trace-designs",
        default="",
        help="comma-separated designs to trace (default: every design)",
    )
    parser.add_argument(
        "--no-cluster",
        action="store_true",
        help="skip the cluster phase (the session store as a 3-primary Redis Cluster)",
    )
    parser.add_argument(
        "--store-bench-requests",
        type=int,
        help="redis-benchmark requests per command in the cluster phase (default 40000; --long:"
        " 200000)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    for name, preset in PRESETS.items():
        if getattr(args, name) is None:
            setattr(args, name, preset[1] if args.long else preset[0])
    traced = designs(parser, "--trace-designs", args.trace_designs, BY_NAME)
    distant = designs(
        parser, "--distance-designs", args.distance_designs, [m.name for m in DISTANCE_MODES]
    )
    if distant and not args.distances:
        parser.error("--distance-designs: no distance phase to run (give --distances)")
    return Options(
        host=args.host,
        users=args.users,
        user_rps=args.user_rps,
        duration=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
        distances=[float(d) for d in args.distances.split(",") if d.strip()],
        distance_duration=args.distance_duration,
        distance_designs=distant,
        out=args.out,
        microbench_n=args.microbench_n,
        instruction_calls=max(args.instruction_calls, 0),
        revocation_samples=max(args.revocation_samples, 1),
        trace_seconds=max(args.trace_seconds, 0.0),
        trace_designs=traced,
        cluster=not args.no_cluster,
        store_bench_requests=max(args.store_bench_requests, 1000),
    )


def main(argv: Iterable[str] | None = None) -> int:
    options = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = run(options)
    print(f"\nreport: {out / 'report.md'}\n        {options.out / 'latest' / 'report.md'}")
    print((out / "summary.md").read_text())
    return 0
