"""`python -m loadtests.model`: what each design would cost at a request rate, hops and store
distance nobody measured, from the bottom-up model of one `make bench` run
(loadtests/measure/model.py; its parts are in the run's results.json).

    python -m loadtests.model --rate 50000 --hops 5 --store-rtt-ms 1 \\
        [--revocation-bound-s 1] [--results reports/reference/results.json]

Per design: CPU per request and the cores it needs, session-store operations per second and
the shards they need (where a --long run measured one shard's capacity), p50 latency, the
revocation lag; then the model's largest error on the run's measured points.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loadtests.measure import model
from loadtests.measure.schema import CONTROL, load
from services.common.settings import REPO_ROOT

DEFAULT_RESULTS = REPO_ROOT / "reports" / "reference" / "results.json"
DEFAULT_QUERY = {"rate": 50_000.0, "hops": 5.0, "rtt_ms": 1.0}


def rows(
    results: Mapping[str, Any], rate: float, hops: float, rtt_ms: float, bound_s: float | None
) -> list[list[str]]:
    """A header and one row per modelled design, in the file's order."""
    header = ["design", "CPU us/req", "cores", "store ops/s", "shards", "p50 ms", "revoked p99"]
    if bound_s is not None:
        header.append(f"lag <= {bound_s:g} s")
    out = [header]
    for name in results["designs"]:
        if name == CONTROL:
            continue
        p = model.project(results, name, rate, hops, rtt_ms)
        if p is None:
            continue
        lag = "until exp" if p.revocation_p99_ms is None else f"{p.revocation_p99_ms:,.1f} ms"
        row = [
            name,
            f"{p.cpu_us_per_request:,.0f}",
            f"{p.cores:,.2f}",
            f"{p.store_ops_per_s:,.0f}",
            "-" if p.shards is None else str(p.shards),
            f"{p.p50_ms:.2f}",
            lag,
        ]
        if bound_s is not None:
            met = p.revocation_p99_ms is not None and p.revocation_p99_ms <= bound_s * 1000
            row.append("yes" if met else "no")
        out.append(row)
    return out


def render(table: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for index, row in enumerate(table):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(
    results: Mapping[str, Any],
    rate: float,
    hops: float,
    rtt_ms: float,
    bound_s: float | None,
    source: str = "",
) -> str:
    """The model's answer as text (what main prints)."""
    shard = model.per_shard_ops(results)
    lines = [
        f"model: {rate:,.0f} req/s, {hops:g} verifying hops, session store {rtt_ms:g} ms away"
        + (f", revocation within {bound_s:g} s" if bound_s else ""),
        f"from {source or 'results'} (run of {results['environment']['started']})",
        f"per-shard capacity: {shard:,.0f} ops/s (redis-benchmark, --long)"
        if shard
        else "per-shard capacity: not in this file (a --long run measures it): no shard count",
        "",
    ]
    table = rows(results, rate, hops, rtt_ms, bound_s)
    if len(table) == 1:
        return "\n".join([*lines, "no design is modelled in this file (is it analysed?)"])
    lines.append(render(table))
    points = (results.get("model") or {}).get("points") or []
    lines += ["", "model error on the measured points (model - measured) / measured:"]
    for name in results["designs"]:
        mine = [p for p in points if p["design"] == name]
        if mine:
            cpu = max(mine, key=lambda p: abs(p["cpu_error_pct"]))
            p50 = max(mine, key=lambda p: abs(p["p50_error_pct"]))
            lines.append(
                f"  {name}: CPU worst {cpu['cpu_error_pct']:+.1f} % ({cpu['kind']} {cpu['x']:g}),"
                f" p50 worst {p50['p50_error_pct']:+.1f} % ({p50['kind']} {p50['x']:g})"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rate, hops, rtt = DEFAULT_QUERY["rate"], DEFAULT_QUERY["hops"], DEFAULT_QUERY["rtt_ms"]
    parser.add_argument("--rate", type=float, default=rate, help=f"requests/s (default {rate:.0f})")
    parser.add_argument("--hops", type=float, default=hops, help=f"verifying hops ({hops:g})")
    parser.add_argument("--store-rtt-ms", type=float, default=rtt, help=f"store RTT ({rtt:g})")
    parser.add_argument("--revocation-bound-s", type=float, default=None)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    if not args.results.exists():
        print(f"error: no {args.results}\n(run `make bench` first)", file=sys.stderr)
        return 1
    results = load(args.results)
    text = report(
        results, args.rate, args.hops, args.store_rtt_ms, args.revocation_bound_s, str(args.results)
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
