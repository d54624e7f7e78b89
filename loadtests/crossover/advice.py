"""The report's "which design when": short statements, each computed from one run's
measurements and the model (loadtests/model.py), never written by hand."""

from __future__ import annotations

from collections.abc import Sequence

from loadtests import model
from loadtests.crossover.document import num
from loadtests.crossover.results import CrossoverResults, Fit
from loadtests.model import DesignModel


def _verb(things: Sequence[object], one: str, many: str) -> str:
    return one if len(things) == 1 else many


def _slope(line: Fit | None) -> float:
    return line["slope"] if line else 0.0


def which_design_when(results: CrossoverResults) -> list[str]:
    """Short statements, each computed from the measurements and the model."""
    models = model.build(results)
    out = _capacity(results)
    if models:
        out += _cpu(models)
        out += _store(results, models)
        out += _distance(models)
    out += _revocation(results)
    if models:
        out += _choices(results, models)
    return out


def _capacity(results: CrossoverResults) -> list[str]:
    knees = {n: d for n, d in results["knee"]["designs"].items() if d["knee_rps"]}
    if not knees:
        return []
    best = max(knees, key=lambda n: float(knees[n]["knee_rps"] or 0))
    worst = min(knees, key=lambda n: float(knees[n]["knee_rps"] or 0))
    b, w = knees[best], knees[worst]
    text = (
        f"Capacity: at p99 <= {results['knee']['slo_ms']:g} ms, {best} held the most offered "
        f"load ({num(b['knee_rps'])} req/s, {num(b['cpu_us_per_request'])} us of CPU per "
        f"request) and {worst} the least ({num(w['knee_rps'])} req/s, "
        f"{num(w['cpu_us_per_request'])} us): "
        f"{float(b['knee_rps'] or 0) / float(w['knee_rps'] or 1):.2f}x."
    )
    limited = [n for n, d in knees.items() if d["limit"] == "load generator"]
    if limited:
        names = ", ".join(limited)
        text += f" The load generator was the limit for {names}: their knee is a lower bound."
    return [text]


def _cpu(models: Sequence[DesignModel]) -> list[str]:
    at2 = sorted(models, key=lambda m: m.cpu["intercept"] + 2 * m.cpu["slope"])
    cheap, dear = at2[0], at2[-1]
    c2 = cheap.cpu["intercept"] + 2 * cheap.cpu["slope"]
    d2 = dear.cpu["intercept"] + 2 * dear.cpu["slope"]
    out = [
        f"CPU: at 2 verifying hops {cheap.name} costs the least ({c2:,.0f} us per request, "
        f"every process and store) and {dear.name} the most ({d2:,.0f} us, {d2 / c2:.2f}x). "
        "Each further verifying hop costs "
        + ", ".join(
            f"{m.name} {m.cpu['slope']:,.0f} us"
            for m in sorted(models, key=lambda m: m.cpu["slope"])
        )
        + "."
    ]
    runs = model.cheapest_by_hops(models)
    if len(runs) > 1:
        out.append(
            "Crossover in CPU: the cheapest design is "
            + ", ".join(
                f"{name} at {a} hop{'s' if b > 1 else ''}"
                if a == b
                else f"{name} from {a} to {b} hops"
                for a, b, name in runs
            )
            + " (the fitted lines; a design that cannot verify fewer times costs what its "
            "fewest cost)."
        )
    else:
        out.append(
            f"No crossover in CPU between 1 and 10 verifying hops: {runs[0][2]} stays the "
            "cheapest; the gaps grow with each hop's cost."
        )
    return out


def _store(results: CrossoverResults, models: Sequence[DesignModel]) -> list[str]:
    stores = [m for m in models if m.store_ops["intercept"] + 5 * m.store_ops["slope"] > 0.05]
    if not stores:
        return []
    rate, hops = model.DEFAULT_QUERY["rate"], model.DEFAULT_QUERY["hops"]
    per_shard = model.per_shard_ops(results)
    parts = []
    for m in stores:
        p = model.predict(m, rate, hops, 0.0, per_shard)
        parts.append(
            f"{m.name} {p.store_ops_per_s:,.0f} ops/s ({m.store_ops['slope']:.2f} per "
            "verifying hop"
            + (f": {p.shards} shard(s) of {per_shard:,.0f} ops/s" if per_shard else "")
            + ")"
        )
    others = [m.name for m in models if m not in stores]
    return [
        f"Session store: at {rate:,.0f} req/s and {hops:g} hops it must serve "
        + "; ".join(parts)
        + (
            f". {', '.join(others)} {_verb(others, 'makes', 'make')} no store call per request."
            if others
            else "."
        )
    ]


def _distance(models: Sequence[DesignModel]) -> list[str]:
    far = [m for m in models if m.distance is not None]
    if not far:
        return []
    waits = [m for m in far if m.store_ops_at(2) >= 0.05]
    free = [m for m in far if m.store_ops_at(2) < 0.05]
    text = "Distance: "
    if waits:
        text += (
            ", ".join(
                f"{m.name} waits for the session store {m.store_ops_at(2):.1f} times per "
                f"GET through the gateway (measured: +{_slope(m.distance):.2f} ms per ms "
                "of RTT)"
                for m in waits
            )
            + "; "
        )
    if free:
        text += (
            f"{', '.join(m.name for m in free)} {_verb(free, 'makes', 'make')} no store "
            "call per request, so the distance does not reach "
            f"{_verb(free, 'its', 'their')} latency (measured: "
            + ", ".join(f"{_slope(m.distance):+.2f} ms per ms" for m in free)
            + ", the machine's noise)"
        )
    return [text.rstrip("; ") + "."]


def _revocation(results: CrossoverResults) -> list[str]:
    lags = results["revocation"]
    if not lags:
        return []
    lag_ms = {n: model.worst_lag_ms(lag) for n, lag in lags.items()}
    fast = {n: v for n, v in lag_ms.items() if v is not None}
    late = [n for n, lag in lags.items() if lag["until_exp"]]
    text = ""
    if fast:
        text = (
            "Revocation: refused at every hop within "
            + ", ".join(
                f"{n} {v:,.0f} ms" for n, v in sorted(fast.items(), key=lambda kv: kv[1] or 0)
            )
            + " (p99, slowest hop)"
        )
    if late:
        lifetime = max((lags[n]["token_lifetime_s"] or 0) for n in late)
        text += ("; " if text else "Revocation: ") + (
            f"{', '.join(late)} {_verb(late, 'accepts', 'accept')} a logged-out token "
            "until it expires" + (f" ({lifetime:.0f} s)" if lifetime else "")
        )
    return [text + "."]


def _choices(results: CrossoverResults, models: Sequence[DesignModel]) -> list[str]:
    """The model's pick at 10,000 req/s, the cases that pick the same grouped together."""
    per_shard = model.per_shard_ops(results)
    picks: dict[tuple[str | None, str | None], list[str]] = {}
    tried = model.scenarios(models, per_shard, rate=10_000, hops=(1, 5), rtts_ms=(0.0, 5.0))
    for s in tried:
        where = f"{s.hops} hop{'s' if s.hops > 1 else ''}, store {s.rtt_ms:g} ms away, " + (
            f"revocation within {s.bound_s:g} s" if s.bound_s else "no revocation bound"
        )
        picks.setdefault((s.cheapest, s.fastest), []).append(where)
    out = []
    for (cheapest, fastest), wheres in picks.items():
        if cheapest is None:
            out.append(f"No measured design meets: {'; '.join(wheres)}.")
            continue
        choice = (
            f"{cheapest} (fewest cores and lowest latency)"
            if cheapest == fastest
            else f"{cheapest} for the fewest cores, {fastest} for the lowest latency"
        )
        scope = (
            "in every case the model was asked (1 or 5 hops, the store 0 or 5 ms away, "
            "with or without a 1 s revocation bound)"
            if len(picks) == 1
            else "with " + "; ".join(wheres)
        )
        out.append(f"At 10,000 req/s, choose {choice} {scope}.")
    return out
