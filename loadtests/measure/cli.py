"""`python -m loadtests.measure` (`make bench`): options in, results.json and the report out."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path

import loadtests.measure
from loadtests.measure.plan import Options

# Flags that tune one option each (default: the preset's value), for short runs and tests.
TUNING: dict[str, tuple[type, str]] = {
    "slo_ms": (float, "p99 SLO of capacity in ms (default 50)"),
    "repeats": (int, "capacity runs per design (default 5)"),
    "window_s": (float, "measured seconds per capacity window"),
    "common_rps": (
        float,
        "the rate of CPU per request, common to every design: at most this (lower where a "
        "knee under it / 0.6 asks; pin it to compare runs on machines of other speeds)",
    ),
    "cpu_repeats": (int, "CPU windows per design"),
    "chain_rps": (float, "offered rate of the chain windows"),
    "chain_repeats": (int, "chain runs (k = 1..5 each)"),
    "distance_rps": (float, "offered rate of the distance windows"),
    "revocation_samples": (int, "logouts per design"),
}


def parse(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.measure",
        description=loadtests.measure.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="every figure once (about 3 min)")
    parser.add_argument(
        "--long",
        action="store_true",
        help="then the cluster failover, traced attribution, key rotation and nginx reference",
    )
    parser.add_argument("--out", type=Path, default=None, help="default reports/<timestamp>/")
    parser.add_argument("--designs", default="", help="comma-separated designs (default all)")
    parser.add_argument("--rtts", default=None, help="store RTTs in ms (default 0,1,2,5)")
    parser.add_argument(
        "--traced-designs", default="", help="--long: designs traced (default every one run)"
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
    given["long"] = args.long
    given["designs"] = tuple(d.strip() for d in args.designs.split(",") if d.strip())
    given["traced_designs"] = tuple(d.strip() for d in args.traced_designs.split(",") if d.strip())
    if args.rtts is not None:
        given["rtts_ms"] = tuple(float(r) for r in args.rtts.split(",") if r.strip())
    base = Options.quick_run() if args.quick else Options()
    return replace(base, **given)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    # SIGTERM (make, CI) unwinds like Ctrl-C: every process, namespace and veth is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from loadtests.measure.run import run

    out = run(options)
    print(f"\nresults: {out / 'results.json'}\nreport:  {out / 'report.html'}\n")
    return 0
