"""`python -m loadtests.crossover`: options in, results and report out, a summary printed."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path

import loadtests.crossover
from loadtests.crossover.plan import DEFAULT_OUT, Options

# Flags that tune one option each (default: the preset's value), for short runs and tests.
TUNING: dict[str, tuple[type, str]] = {
    "slo_ms": (float, "p99 SLO of the knee in ms (default 50)"),
    "users": (int, "Locust users per design"),
    "processes": (int, "Locust worker processes (1: no master/worker split)"),
    "ladder_start": (float, "first offered rate of the knee, req/s"),
    "ladder_factor": (float, "offered rate factor per knee step"),
    "ladder_steps": (int, "planned knee steps (the search goes on while a design holds)"),
    "search_steps": (int, "knee steps at most, past the plan"),
    "refine_to": (float, "bisect each knee until the rates are within this fraction"),
    "step_s": (float, "measured seconds per knee window"),
    "settle_s": (float, "seconds after each change before measuring"),
    "rounds": (int, "knee rounds"),
    "hop_rps": (float, "offered rate of the hop windows"),
    "hop_s": (float, "measured seconds per hop window"),
    "distance_rps": (float, "offered rate of the distance windows"),
    "distance_s": (float, "measured seconds per distance window"),
    "revocation_samples": (int, "logouts per design (--long: 50)"),
    "revocation_limit_s": (float, "how long an old credential is polled after logout"),
    "rotation_rps": (float, "offered rate while the key rotates"),
    "rotation_s": (float, "measured seconds of the rotation window"),
    "nginx_s": (float, "seconds of wrk per proxy in the nginx reference"),
    "nginx_rounds": (int, "interleaved rounds of the nginx reference"),
    "shard_requests": (int, "redis-benchmark requests (per-shard capacity)"),
}


def parse(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.crossover",
        description=loadtests.crossover.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--long", action="store_true", help="the full curves (about 25 min)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    parser.add_argument(
        "--designs", default="", help="comma-separated mode names (default: every mode)"
    )
    parser.add_argument(
        "--rtts", default=None, help="store RTTs in ms, comma-separated (default 0,0.5,1,2,5)"
    )
    known = {f.name for f in fields(Options)}
    for name, (kind, text) in TUNING.items():
        assert name in known, name
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=text)
    args = parser.parse_args(list(argv) if argv is not None else None)
    given: dict[str, object] = {
        name: getattr(args, name) for name in TUNING if getattr(args, name) is not None
    }
    given["out"] = args.out
    given["designs"] = tuple(d.strip() for d in args.designs.split(",") if d.strip())
    if args.rtts is not None:
        given["rtts_ms"] = tuple(float(r) for r in args.rtts.split(",") if r.strip())
    base = Options.long_run() if args.long else Options()
    return replace(base, **given)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    # SIGTERM (make, CI) unwinds like Ctrl-C: every process, namespace and veth is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from loadtests.crossover.report import summary
    from loadtests.crossover.results import load
    from loadtests.crossover.run import run

    out = run(options)
    print(f"\nreport: {out / 'report.md'}\n        {out / 'report.html'}\n")
    print(summary(load(out / "results.json")))
    return 0
