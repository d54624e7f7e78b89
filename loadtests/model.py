"""The crossover model: what each design would cost at a given request rate, verifying hops,
session-store distance and revocation bound, from one crossover run's measurements.

    python -m loadtests.model --rate 50000 --hops 5 --store-rtt-ms 1 \\
        [--revocation-bound-s 1] [--results reports/latest/crossover/results.json]

Per design it prints the cores, the session-store operations per second and the store shards
they need (per-shard capacity measured by redis-benchmark in the same run), the p50 latency and
the part of it the verifying hops and the store distance add, and the revocation lag; then the
model's error on every point the run measured.

The model, fitted per design by least squares (loadtests/crossover/results.py has the data):
- CPU us per request = a + b * hops, store ops per request = a + b * hops, p50 latency (ms) =
  a + b * hops, over the hop windows (x = verifications per request, as the services counted
  them: 1 with edge auth off, 2 for a GET, 3 for a POST, where orders asks auth);
- each session-store command a request makes is a round trip it waits for (the verifiers call
  the store one after the other), so a store `d` ms farther away adds store ops per request x d
  ms; the distance windows (p50 latency against the measured store RTT) check that;
- revocation lag: the worst hop's p99 over the run's logouts, or the token's lifetime when
  revocation is off (the credential works until `exp`).
Everything here is a pure function of the results, except main().

Over 300 lines on purpose: the fits, the projection and its printed answer are one model, read
top to bottom, and tests/unit/test_model.py uses each part through this one module.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtests.crossover.results import (
    CrossoverResults,
    DistancePoint,
    Fit,
    FitPoint,
    HopFits,
    HopPoint,
    RevocationLag,
    load,
)
from services.common.settings import REPO_ROOT

DEFAULT_RESULTS = REPO_ROOT / "reports" / "latest" / "crossover" / "results.json"
ERROR_GOAL_PCT = 20.0  # the CPU model should be within this on the measured points
STORE_OPS_FLOOR = 0.1  # store ops per request below this get no relative error
# What `python -m loadtests.model` answers when not asked otherwise (and the report's model.txt).
DEFAULT_QUERY = {"rate": 50_000.0, "hops": 5.0, "rtt_ms": 1.0}


def least_squares(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line; a flat line when x does not vary."""
    if not xs:
        return 0.0, 0.0
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread < 1e-12:
        return mean_y, 0.0
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return mean_y - slope * mean_x, slope


def error_pct(predicted: float, measured: float, floor: float = 1e-9) -> float | None:
    """The relative error in %; None where the measured value is below `floor` (a relative
    error of a value near zero says nothing)."""
    if abs(measured) < floor:
        return None if abs(predicted - measured) > 1e-9 else 0.0
    return round((predicted - measured) / measured * 100, 1)


def fit(xs: Sequence[float], ys: Sequence[float], floor: float = 1e-9) -> Fit:
    intercept, slope = least_squares(xs, ys)
    points: list[FitPoint] = []
    for x, y in zip(xs, ys, strict=True):
        predicted = intercept + slope * x
        points.append(
            {
                "x": round(x, 3),
                "measured": round(y, 3),
                "predicted": round(predicted, 3),
                "error_pct": error_pct(predicted, y, floor),
            }
        )
    errors = [abs(p["error_pct"]) for p in points if p["error_pct"] is not None]
    return {
        "intercept": round(intercept, 4),
        "slope": round(slope, 4),
        "points": points,
        "max_abs_error_pct": max(errors) if errors else None,
    }


def _usable_hops(points: Iterable[HopPoint]) -> list[HopPoint]:
    return [p for p in points if p["requests"] > 0 and p["p50_ms"] is not None]


def _usable_distance(points: Iterable[DistancePoint]) -> list[DistancePoint]:
    return [p for p in points if p["requests"] > 0 and p["p50_ms"] is not None]


def hop_fits(points: Sequence[HopPoint]) -> HopFits:
    usable = _usable_hops(points)
    xs = [p["checks_per_request"] for p in usable]
    return {
        "x": "checks",
        "cpu_us": fit(xs, [p["cpu_us_total"] for p in usable]),
        "store_ops": fit(
            xs,
            [p["store_ops_per_request"].get("session_store", 0.0) for p in usable],
            STORE_OPS_FLOOR,
        ),
        "p50_ms": fit(xs, [float(p["p50_ms"] or 0.0) for p in usable]),
    }


@dataclass(frozen=True)
class HopSplit:
    """What the hop windows say beside the line: one more check on the same GET (edge auth off
    to on), and what a POST costs beyond one more check (the order's write, the call to auth)."""

    check_us: float | None  # CPU per verification: GET at 2 hops minus GET at 1, per check
    post_extra_us: float | None  # POST at 3 hops minus GET at 2, minus its extra checks


def hop_split(points: Sequence[HopPoint]) -> HopSplit:
    by_hops = {p["hops"]: p for p in _usable_hops(points)}
    one, two, three = by_hops.get(1), by_hops.get(2), by_hops.get(3)
    check = None
    if one and two and two["checks_per_request"] - one["checks_per_request"] > 0.5:
        check = (two["cpu_us_total"] - one["cpu_us_total"]) / (
            two["checks_per_request"] - one["checks_per_request"]
        )
    extra = None
    if two and three and check is not None:
        more = three["checks_per_request"] - two["checks_per_request"]
        extra = three["cpu_us_total"] - two["cpu_us_total"] - check * more
    return HopSplit(
        None if check is None else round(check, 1), None if extra is None else round(extra, 1)
    )


def distance_fit(points: Sequence[DistancePoint]) -> Fit:
    usable = _usable_distance(points)
    return fit([p["measured_rtt_ms"] for p in usable], [float(p["p50_ms"] or 0.0) for p in usable])


def worst_lag_ms(lag: RevocationLag) -> float | None:
    """The slowest hop's p99 refusal (None when some hop never refused)."""
    values = [h["p99_ms"] for h in lag["hops"].values()]
    if lag["until_exp"] or not values or any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


@dataclass(frozen=True)
class DesignModel:
    name: str
    cpu: Fit
    store_ops: Fit
    latency: Fit
    distance: Fit | None  # measured: p50 latency against store RTT (2-hop GET)
    base_rtt_ms: float  # the store RTT the hop windows ran with (the nearest distance point)
    base_distance_p50_ms: float | None  # p50 of the nearest distance point
    revocation_lag_ms: float | None  # worst hop p99; None: until exp (or not measured)
    until_exp: bool
    token_lifetime_s: float | None
    knee_rps: float | None
    min_hops: float = 1.0  # the fewest verifications the design can make (the hybrid: 2)

    def store_ops_at(self, hops: float) -> float:
        return max(self.store_ops["intercept"] + self.store_ops["slope"] * hops, 0.0)

    def distance_ms(self, hops: float, rtt_ms: float) -> float:
        """What a store `rtt_ms` away adds to a request with `hops` verifying hops: one round
        trip per store command, beyond the RTT the hop windows were measured with."""
        return self.store_ops_at(hops) * max(rtt_ms - self.base_rtt_ms, 0.0)


def per_shard_ops(results: CrossoverResults) -> float | None:
    """One session-store shard's capacity in this run (None: not measured)."""
    shards = results["shards"]
    return shards["per_shard_ops"] if shards else None


def build(results: CrossoverResults) -> list[DesignModel]:
    """One model per design that has hop measurements, in the run's design order."""
    models = []
    for info in results["designs"]:
        name = info["name"]
        points = results["hops"]["designs"].get(name, [])
        if not _usable_hops(points):
            continue
        fits = hop_fits(points)
        dist_points = [p for p in results["distance"]["designs"].get(name, []) if p["requests"]]
        lag = results["revocation"].get(name)
        knee = results["knee"]["designs"].get(name)
        nearest = min(dist_points, key=lambda p: p["measured_rtt_ms"], default=None)
        models.append(
            DesignModel(
                name=name,
                cpu=fits["cpu_us"],
                store_ops=fits["store_ops"],
                latency=fits["p50_ms"],
                distance=distance_fit(dist_points) if len(dist_points) >= 2 else None,
                base_rtt_ms=nearest["measured_rtt_ms"] if nearest else 0.0,
                base_distance_p50_ms=nearest["p50_ms"] if nearest else None,
                revocation_lag_ms=worst_lag_ms(lag) if lag else None,
                until_exp=bool(lag and lag["until_exp"]),
                token_lifetime_s=lag["token_lifetime_s"] if lag else None,
                knee_rps=knee["knee_rps"] if knee else None,
                min_hops=float(max(1, min(round(p["checks_per_request"]) for p in points))),
            )
        )
    return models


@dataclass(frozen=True)
class Prediction:
    design: str
    hops: float  # as asked, or the design's fewest when it cannot make fewer verifications
    cpu_us_per_request: float
    cores: float
    store_ops_per_s: float
    shards: int
    p50_ms: float
    added_ms: float  # what the verifying hops and the store distance add
    revocation_lag_s: float | None  # None: not measured
    until_exp: bool
    meets_bound: bool | None  # None: no bound asked

    @property
    def revocation_text(self) -> str:
        if self.revocation_lag_s is None:
            return "not measured"
        if self.until_exp:
            return f"until exp ({self.revocation_lag_s:.0f} s)"
        return f"{self.revocation_lag_s * 1000:.0f} ms"


def predict(
    model: DesignModel,
    rate: float,
    hops: float,
    rtt_ms: float,
    per_shard_ops: float | None,
    revocation_bound_s: float | None = None,
) -> Prediction:
    hops = max(hops, model.min_hops)
    cpu = max(model.cpu["intercept"] + model.cpu["slope"] * hops, 0.0)
    ops_s = model.store_ops_at(hops) * rate
    shards = math.ceil(ops_s / per_shard_ops) if per_shard_ops and ops_s > 0.5 else 0
    distance_ms = model.distance_ms(hops, rtt_ms)
    p50 = model.latency["intercept"] + model.latency["slope"] * hops + distance_ms
    added = max(model.latency["slope"], 0.0) * hops + distance_ms
    if model.until_exp:
        lag = model.token_lifetime_s
    else:
        lag = None if model.revocation_lag_ms is None else model.revocation_lag_ms / 1000
    meets = None
    if revocation_bound_s is not None:
        meets = lag is not None and not model.until_exp and lag <= revocation_bound_s
    return Prediction(
        design=model.name,
        hops=hops,
        cpu_us_per_request=round(cpu, 1),
        cores=round(cpu * rate / 1e6, 2),
        store_ops_per_s=round(ops_s),
        shards=shards,
        p50_ms=round(max(p50, 0.0), 2),
        added_ms=round(added, 2),
        revocation_lag_s=None if lag is None else round(lag, 3),
        until_exp=model.until_exp,
        meets_bound=meets,
    )


@dataclass(frozen=True)
class PointError:
    design: str
    where: str  # "hops 2 (GET)", "RTT 1.0 ms"
    metric: str  # cpu_us, store_ops, p50_ms
    measured: float
    predicted: float
    error_pct: float | None


def _point_error(
    design: str, where: str, metric: str, predicted: float, measured: float, floor: float = 1e-9
) -> PointError:
    return PointError(
        design,
        where,
        metric,
        round(measured, 3),
        round(predicted, 3),
        error_pct(predicted, measured, floor),
    )


def point_errors(results: CrossoverResults, models: Sequence[DesignModel]) -> list[PointError]:
    """The model against every measured point: the hop windows (CPU, store operations,
    latency: the fits) and the distance windows (CPU from the hop fit at the window's
    verifications; latency from the nearest distance window plus one round trip per store
    command for the added distance)."""
    out: list[PointError] = []
    tasks = {1: "GET, edge auth off", 2: "GET", 3: "POST"}
    for model in models:
        for point in _usable_hops(results["hops"]["designs"].get(model.name, [])):
            x = point["checks_per_request"]
            where = f"hops {point['hops']} ({tasks.get(point['hops'], '?')})"
            for metric, line, measured in (
                ("cpu_us", model.cpu, point["cpu_us_total"]),
                (
                    "store_ops",
                    model.store_ops,
                    point["store_ops_per_request"].get("session_store", 0.0),
                ),
                ("p50_ms", model.latency, float(point["p50_ms"] or 0.0)),
            ):
                predicted = line["intercept"] + line["slope"] * x
                floor = STORE_OPS_FLOOR if metric == "store_ops" else 1e-9
                out.append(_point_error(model.name, where, metric, predicted, measured, floor))
        for distant in _usable_distance(results["distance"]["designs"].get(model.name, [])):
            x = distant["checks_per_request"]
            cpu = model.cpu["intercept"] + model.cpu["slope"] * x
            where = f"RTT {distant['added_rtt_ms']:g} ms"
            pairs = [("cpu_us", cpu, distant["cpu_us_total"])]
            if model.base_distance_p50_ms is not None:
                latency = model.base_distance_p50_ms + model.distance_ms(
                    x, distant["measured_rtt_ms"]
                )
                pairs.append(("p50_ms", latency, float(distant["p50_ms"] or 0.0)))
            out += [_point_error(model.name, where, *pair) for pair in pairs]
    return out


def worst_error(errors: Iterable[PointError], metric: str, where: str = "") -> float | None:
    values = [
        abs(e.error_pct)
        for e in errors
        if e.metric == metric and e.error_pct is not None and e.where.startswith(where)
    ]
    return max(values) if values else None


def cheapest_by_hops(models: Sequence[DesignModel], limit: int = 10) -> list[tuple[int, int, str]]:
    """(from, to, design): which design the CPU lines make cheapest over each run of hop
    counts from 1 to `limit` (a design that cannot make that few verifications costs what its
    fewest cost). Where the cheapest changes, the lines cross."""
    runs: list[tuple[int, int, str]] = []
    for hops in range(1, limit + 1):
        best = min(models, key=lambda m: predict(m, 1.0, hops, 0.0, None).cpu_us_per_request)
        if runs and runs[-1][2] == best.name:
            runs[-1] = (runs[-1][0], hops, best.name)
        else:
            runs.append((hops, hops, best.name))
    return runs


def crossings(models: Sequence[DesignModel], limit: float = 10.0) -> list[tuple[str, str, float]]:
    """(cheaper beyond, dearer beyond, hops) where two designs' CPU lines cross between
    1 and `limit` verifying hops: past that many hops the first costs less CPU."""
    out = []
    for i, a in enumerate(models):
        for b in models[i + 1 :]:
            ds = a.cpu["slope"] - b.cpu["slope"]
            if abs(ds) < 1e-9:
                continue
            k = (b.cpu["intercept"] - a.cpu["intercept"]) / ds
            if max(1.0, a.min_hops, b.min_hops) < k <= limit:
                cheaper, dearer = (a.name, b.name) if ds < 0 else (b.name, a.name)
                out.append((cheaper, dearer, round(k, 2)))
    return out


@dataclass(frozen=True)
class Scenario:
    rate: float
    hops: int
    rtt_ms: float
    bound_s: float | None
    cheapest: str | None  # fewest cores among the designs meeting the bound
    fastest: str | None  # lowest p50 among them
    predictions: tuple[Prediction, ...]


def scenarios(
    models: Sequence[DesignModel],
    per_shard_ops: float | None,
    rate: float = 10_000,
    hops: Sequence[int] = (1, 3, 5),
    rtts_ms: Sequence[float] = (0.0, 1.0, 5.0),
    bounds_s: Sequence[float | None] = (None, 1.0),
) -> list[Scenario]:
    out = []
    for bound in bounds_s:
        for h in hops:
            for rtt in rtts_ms:
                predictions = tuple(predict(m, rate, h, rtt, per_shard_ops, bound) for m in models)
                ok = [p for p in predictions if bound is None or p.meets_bound]
                out.append(
                    Scenario(
                        rate,
                        h,
                        rtt,
                        bound,
                        min(ok, key=lambda p: p.cores).design if ok else None,
                        min(ok, key=lambda p: p.p50_ms).design if ok else None,
                        predictions,
                    )
                )
    return out


def table(predictions: Sequence[Prediction], bound: float | None) -> list[list[str]]:
    """Rows for printing (and the report): a header and one row per design."""
    header = ["design", "hops", "CPU us/req", "cores", "store ops/s", "shards", "p50 ms"]
    header.append("added ms")
    header.append("revocation lag")
    if bound is not None:
        header.append(f"lag <= {bound:g} s")
    rows = [header]
    for p in predictions:
        row = [
            p.design,
            f"{p.hops:g}",
            f"{p.cpu_us_per_request:,.0f}",
            f"{p.cores:,.2f}",
            f"{p.store_ops_per_s:,.0f}",
            str(p.shards),
            f"{p.p50_ms:.2f}",
            f"{p.added_ms:.2f}",
            p.revocation_text,
        ]
        if bound is not None:
            row.append("yes" if p.meets_bound else "no")
        rows.append(row)
    return rows


def render(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(
    results: CrossoverResults,
    rate: float,
    hops: float,
    rtt_ms: float,
    bound: float | None,
    source: str = "",
) -> str:
    """The model's answer as text (what main prints)."""
    models = build(results)
    shards = results["shards"]
    per_shard = per_shard_ops(results)
    lines = [
        f"crossover model: {rate:,.0f} req/s, {hops:g} verifying hops, "
        f"session store {rtt_ms:g} ms away" + (f", revocation within {bound:g} s" if bound else ""),
        f"from {source or 'results'} (run of {results['started']}, "
        f"{results['machine'].get('cpus')} CPUs)",
        (
            f"per-shard capacity: {per_shard:,.0f} ops/s ({shards['tool']} GET/SET, same run)"
            if shards and per_shard
            else "per-shard capacity: not measured (no redis-benchmark): shards not computed"
        ),
        "",
    ]
    if not models:
        return "\n".join([*lines, "no design has hop measurements in these results"])
    predictions = [predict(m, rate, hops, rtt_ms, per_shard, bound) for m in models]
    lines.append(render(table(predictions, bound)))
    errors = point_errors(results, models)
    lines += ["", "model error on the measured points (|predicted - measured| / measured):"]
    for metric, label in (
        ("cpu_us", "CPU per request"),
        ("store_ops", "store ops"),
        ("p50_ms", "p50 latency"),
    ):
        hop_error = worst_error(errors, metric, "hops")
        dist_error = worst_error(errors, metric, "RTT")
        parts = [f"hop points max {hop_error:.1f} %" if hop_error is not None else "hop points -"]
        if metric != "store_ops":
            parts.append(
                f"distance points max {dist_error:.1f} %"
                if dist_error is not None
                else "distance points -"
            )
        lines.append(f"  {label}: " + ", ".join(parts))
    cpu_error = worst_error(errors, "cpu_us")
    if cpu_error is not None:
        verdict = "within" if cpu_error <= ERROR_GOAL_PCT else "NOT within"
        lines.append(f"  CPU model {verdict} {ERROR_GOAL_PCT:.0f} % on every measured point")
    for model in models:
        model_errors = [e for e in errors if e.design == model.name and e.metric == "cpu_us"]
        worst = max(model_errors, key=lambda e: abs(e.error_pct or 0.0), default=None)
        if worst is not None and worst.error_pct is not None:
            lines.append(
                f"    {model.name}: worst CPU point {worst.where}: measured {worst.measured:,.0f}, "
                f"predicted {worst.predicted:,.0f} us ({worst.error_pct:+.1f} %)"
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
    parser.add_argument(
        "--hops", type=float, default=hops, help=f"verifying hops (default {hops:g})"
    )
    parser.add_argument(
        "--store-rtt-ms", type=float, default=rtt, help=f"store RTT (default {rtt:g})"
    )
    parser.add_argument("--revocation-bound-s", type=float, default=None)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    try:
        results = load(args.results)
    except (OSError, ValueError) as error:
        print(f"error: {error}\n(run `python -m loadtests.crossover` first)", file=sys.stderr)
        return 1
    print(
        report(
            results,
            args.rate,
            args.hops,
            args.store_rtt_ms,
            args.revocation_bound_s,
            str(args.results),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
