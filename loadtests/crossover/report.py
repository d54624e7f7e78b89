"""The crossover report: report.md and report.html (plots embedded, readable offline) from one
results.json, with the crossover charts and a "which design when" section computed from the
numbers (through loadtests/model.py), never written by hand.

Both files come from one list of blocks (headings, paragraphs, bullet lists, tables, images),
so they say the same thing. `python -m loadtests.crossover.report RESULTS [OUT]` re-renders a
recorded run.
"""

from __future__ import annotations

import base64
import html
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtests import model
from loadtests.crossover.results import (
    CrossoverResults,
    Fit,
    HopPoint,
    KneeStep,
    RevocationLag,
    load,
)

DEFAULT_QUERY = {"rate": 50_000.0, "hops": 5.0, "rtt_ms": 1.0}
IMAGES = {
    "knee": ("knee_latency.png", "p50 and p99 latency against offered load, per design"),
    "capacity": ("capacity.png", "offered load held at the knee and CPU per request there"),
    "hops": ("cost_vs_hops.png", "CPU, store operations and latency against verifying hops"),
    "distance": ("latency_vs_store_rtt.png", "p50 latency against the session store's RTT"),
    "revocation": ("revocation_lag.png", "revocation lag per hop (p99)"),
}


# -- blocks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    rows: tuple[tuple[str, ...], ...]  # the first is the header

    @classmethod
    def of(cls, rows: Sequence[Sequence[str]]) -> Table:
        return cls(tuple(tuple(r) for r in rows))


@dataclass(frozen=True)
class Image:
    key: str


@dataclass(frozen=True)
class Pre:
    text: str


Block = Heading | Para | Bullets | Table | Image | Pre


def _num(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def _verb(things: Sequence[object], one: str, many: str) -> str:
    return one if len(things) == 1 else many


def _slope(line: Fit | None) -> float:
    return line["slope"] if line else 0.0


def _never_refused(lag: RevocationLag, hop: str) -> bool:
    found = lag["hops"].get(hop)
    return bool(found and found["never_refused"])


def _p99(lag: RevocationLag, hop: str) -> float:
    found = lag["hops"].get(hop)
    return float(found["p99_ms"] or 0.0) if found else 0.0


def _decisive(steps: Sequence[KneeStep]) -> list[KneeStep]:
    """Round 1's window at each offered rate that decided it: the one that held, else the
    last one (a step past the SLO is measured twice)."""
    by_rate: dict[float, KneeStep] = {}
    for step in steps:
        if step["round"] != 1:
            continue
        kept = by_rate.get(step["offered_rps"])
        if kept is None or not kept["held"]:
            by_rate[step["offered_rps"]] = step
    return [by_rate[rate] for rate in sorted(by_rate)]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


# -- what the numbers say -------------------------------------------------------------------------


def which_design_when(results: CrossoverResults) -> list[str]:
    """Short statements, each computed from the measurements and the model."""
    models = model.build(results)
    out: list[str] = []
    knees = {n: d for n, d in results["knee"]["designs"].items() if d["knee_rps"]}
    if knees:
        best = max(knees, key=lambda n: float(knees[n]["knee_rps"] or 0))
        worst = min(knees, key=lambda n: float(knees[n]["knee_rps"] or 0))
        b, w = knees[best], knees[worst]
        text = (
            f"Capacity: at p99 <= {results['knee']['slo_ms']:g} ms, {best} held the most offered "
            f"load ({_num(b['knee_rps'])} req/s, {_num(b['cpu_us_per_request'])} us of CPU per "
            f"request) and {worst} the least ({_num(w['knee_rps'])} req/s, "
            f"{_num(w['cpu_us_per_request'])} us): "
            f"{float(b['knee_rps'] or 0) / float(w['knee_rps'] or 1):.2f}x."
        )
        limited = [n for n, d in knees.items() if d["limit"] == "load generator"]
        if limited:
            text += f" Locust was the limit for {', '.join(limited)}: their knee is a lower bound."
        out.append(text)
    if models:
        at2 = sorted(models, key=lambda m: m.cpu["intercept"] + 2 * m.cpu["slope"])
        cheap, dear = at2[0], at2[-1]
        c2 = cheap.cpu["intercept"] + 2 * cheap.cpu["slope"]
        d2 = dear.cpu["intercept"] + 2 * dear.cpu["slope"]
        out.append(
            f"CPU: at 2 verifying hops {cheap.name} costs the least ({c2:,.0f} us per request, "
            f"every process and store) and {dear.name} the most ({d2:,.0f} us, {d2 / c2:.2f}x). "
            "Each further verifying hop costs "
            + ", ".join(
                f"{m.name} {m.cpu['slope']:,.0f} us"
                for m in sorted(models, key=lambda m: m.cpu["slope"])
            )
            + "."
        )
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
        stores = [m for m in models if m.store_ops["intercept"] + 5 * m.store_ops["slope"] > 0.05]
        shards = results["shards"]
        if stores:
            rate, hops = DEFAULT_QUERY["rate"], DEFAULT_QUERY["hops"]
            per_shard = shards["per_shard_ops"] if shards else None
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
            out.append(
                f"Session store: at {rate:,.0f} req/s and {hops:g} hops it must serve "
                + "; ".join(parts)
                + (
                    f". {', '.join(others)} {_verb(others, 'makes', 'make')} no store call per "
                    "request."
                    if others
                    else "."
                )
            )
        far = [m for m in models if m.distance is not None]
        if far:
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
            out.append(text.rstrip("; ") + ".")
    lags = results["revocation"]
    if lags:
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
        out.append(text + ".")
    if models:
        shards = results["shards"]
        per_shard = shards["per_shard_ops"] if shards else None
        picks: dict[tuple[str | None, str | None], list[str]] = {}
        tried = model.scenarios(models, per_shard, rate=10_000, hops=(1, 5), rtts_ms=(0.0, 5.0))
        for s in tried:
            where = f"{s.hops} hop{'s' if s.hops > 1 else ''}, store {s.rtt_ms:g} ms away, " + (
                f"revocation within {s.bound_s:g} s" if s.bound_s else "no revocation bound"
            )
            picks.setdefault((s.cheapest, s.fastest), []).append(where)
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


# -- sections -------------------------------------------------------------------------------------


def _knee_blocks(results: CrossoverResults) -> list[Block]:
    knee = results["knee"]
    designs = knee["designs"]
    blocks: list[Block] = [
        Heading(2, "1. Capacity at the knee"),
        Para(
            f"Offered load stepped up ({', '.join(f'{r:g}' for r in knee['ladder'])} req/s; "
            f"{results['options'].get('step_s')} s measured per step after "
            f"{results['options'].get('settle_s')} s to settle), the designs of each settings "
            "group interleaved step by step, each with its own Locust user class and task mix, "
            f"until p99 passed {knee['slo_ms']:g} ms or a request failed. CPU per request from "
            "every service's /metrics and both stores' INFO, the idle baseline taken out. "
            "A step where a Locust process used over 90 % of a core, or could not keep the "
            "offered pace while answers came quickly, is marked L."
        ),
    ]
    if not designs:
        return [*blocks, Para("Not measured.")]
    best = max((float(d["knee_rps"] or 0) for d in designs.values()), default=0.0) or 1.0
    rows = [
        [
            "design",
            "knee (req/s offered)",
            "served",
            "p99 ms",
            "CPU us/req (services)",
            "CPU us/req (+ stores)",
            "vs best",
            "ended by",
            "by round",
        ]
    ]
    for name, d in designs.items():
        rows.append(
            [
                name,
                _num(d["knee_rps"]),
                _num(d["knee_achieved_rps"]),
                _ms(d["knee_p99_ms"]),
                _num(d["cpu_us_services"]),
                _num(d["cpu_us_per_request"]),
                f"{float(d['knee_rps'] or 0) / best:.2f}" if d["knee_rps"] else "-",
                d["limit"],
                ", ".join(_num(k) for k in d["by_round"]),
            ]
        )
    blocks.append(Table.of(rows))
    names = list(designs)
    ratio_rows = [["knee ratio (row / column)", *names]]
    for a in names:
        ratio_rows.append(
            [
                a,
                *(
                    f"{knee['ratios'].get(a, {}).get(b, 0):.2f}"
                    if b in knee["ratios"].get(a, {})
                    else "-"
                    for b in names
                ),
            ]
        )
    blocks.append(Table.of(ratio_rows))
    blocks.append(
        Para("p99 (ms) at each offered step (x: past the knee; L: Locust was the limit):")
    )
    ladder = knee["ladder"]
    step_rows = [["design", *(f"{r:g}" for r in ladder)]]
    for name, d in designs.items():
        cells = []
        for rate in ladder:
            found = [s for s in _decisive(d["steps"]) if s["offered_rps"] == rate]
            if not found:
                cells.append("")
                continue
            s = found[0]
            mark = ("" if s["held"] else " x") + (" L" if s["generator_limited"] else "")
            cells.append(_ms(s["p99_ms"]) + mark)
        step_rows.append([name, *cells])
    blocks += [Table.of(step_rows), Image("knee"), Image("capacity")]
    return blocks


def _hop_blocks(results: CrossoverResults) -> list[Block]:
    hops = results["hops"]
    blocks: list[Block] = [
        Heading(2, "2. Verifying hops"),
        Para(
            f"Each design at {hops['rate_rps']:g} req/s: 1 hop (GET /orders through a gateway "
            "with GATEWAY_EDGE_AUTH=0: only orders verifies), 2 hops (GET through the gateway), "
            "3 hops (POST /orders: orders also asks auth). x is the verifications per request "
            "the services counted (the hybrid's gateway verifies even with edge auth off, to "
            "exchange the session). Fitted per design by least squares: y = a + b x; the error "
            "is (predicted - measured) / measured at each point."
        ),
    ]
    models = {m.name: m for m in model.build(results)}
    fit_rows = [
        [
            "design",
            "CPU us/req: a",
            "b per hop",
            "max err %",
            "store ops: a",
            "b per hop",
            "p50 ms: a",
            "b per hop",
            "max err %",
        ]
    ]
    for name, m in models.items():
        fit_rows.append(
            [
                name,
                _num(m.cpu["intercept"]),
                _num(m.cpu["slope"]),
                _num(m.cpu["max_abs_error_pct"], 1),
                _num(m.store_ops["intercept"], 2),
                _num(m.store_ops["slope"], 2),
                _num(m.latency["intercept"], 2),
                _num(m.latency["slope"], 2),
                _num(m.latency["max_abs_error_pct"], 1),
            ]
        )
    blocks.append(Table.of(fit_rows))
    rows = [
        [
            "design",
            "hops",
            "checks/req",
            "CPU us/req",
            "predicted",
            "err %",
            "store ops/req",
            "predicted",
            "p50 ms",
            "predicted",
            "err %",
            "failures",
        ]
    ]
    for name, points in hops["designs"].items():
        fitted = models.get(name)
        for p in points:
            x = p["checks_per_request"]
            cpu_p = fitted.cpu["intercept"] + fitted.cpu["slope"] * x if fitted else None
            ops_p = (
                fitted.store_ops["intercept"] + fitted.store_ops["slope"] * x if fitted else None
            )
            lat_p = fitted.latency["intercept"] + fitted.latency["slope"] * x if fitted else None
            ops = p["store_ops_per_request"].get("session_store", 0.0)
            rows.append(
                [
                    name,
                    f"{p['hops']} ({'POST' if p['task'] == 'post' else 'GET'}, {p['gateway']})",
                    f"{x:.2f}",
                    _num(p["cpu_us_total"]),
                    _num(cpu_p),
                    _num(
                        model.error_pct(cpu_p, p["cpu_us_total"]) if cpu_p is not None else None, 1
                    ),
                    f"{ops:.2f}",
                    _num(ops_p, 2),
                    _ms(p["p50_ms"]),
                    _num(lat_p, 2),
                    _num(
                        model.error_pct(lat_p, float(p["p50_ms"] or 0))
                        if lat_p is not None
                        else None,
                        1,
                    ),
                    str(p["failures"]),
                ]
            )
    blocks += [Table.of(rows), Image("hops")]
    flat = [
        name
        for name, points in hops["designs"].items()
        if len({round(p["checks_per_request"]) for p in points}) < 3
    ]
    if flat:
        blocks.append(
            Para(
                f"{', '.join(flat)}: the windows did not span three verification counts (the "
                "hybrid's gateway verifies with edge auth off too, to exchange the session), so "
                "the per-hop slope rests on the POST window alone, which also writes the order "
                "and calls auth: read its extrapolation with care."
            )
        )
    return blocks


def _distance_blocks(results: CrossoverResults) -> list[Block]:
    distance = results["distance"]
    blocks: list[Block] = [
        Heading(2, "3. Distance to the session store"),
        Para(
            f"Method: {distance['method']} ({distance['method_note']}). GET /orders (2 hops) at "
            f"{distance['rate_rps']:g} req/s with the session store's round trip raised by "
            f"{', '.join(f'{r:g}' for r in distance['rtts_ms'])} ms; the RTT column is a "
            "PING's median on the path the services use."
        ),
    ]
    if not distance["designs"]:
        return [*blocks, Para("Not measured.")]
    rtts = distance["rtts_ms"]
    rows = [["design", *(f"+{r:g} ms" for r in rtts), "ms per ms RTT"]]
    measured_row = ["(measured RTT ms)"]
    for rtt in rtts:
        values = [
            p["measured_rtt_ms"]
            for ps in distance["designs"].values()
            for p in ps
            if p["added_rtt_ms"] == rtt
        ]
        measured_row.append(f"{values[0]:.2f}" if values else "-")
    rows.append([*measured_row, ""])
    for name, points in distance["designs"].items():
        cells = []
        for rtt in rtts:
            found = [p for p in points if p["added_rtt_ms"] == rtt]
            cells.append(f"{_ms(found[0]['p50_ms'])} / {_ms(found[0]['p99_ms'])}" if found else "-")
        line = distance["fits"].get(name)
        slope = line["slope"] if line else None
        rows.append([name, *cells, _num(slope, 2)])
    blocks += [Para("p50 / p99 latency (ms):"), Table.of(rows), Image("distance")]
    return blocks


def _revocation_blocks(results: CrossoverResults) -> list[Block]:
    lags = results["revocation"]
    blocks: list[Block] = [
        Heading(2, "4. Revocation lag per hop"),
        Para(
            "Log in, use the credential at every hop, log out through the gateway, then poll "
            "every hop at once on its own address (the hybrid's services with its internal "
            "token) until each refuses the old credential: the time from the logout's answer "
            "until the refusal was answered, p50 / p99 / max over the logouts (measured with "
            "the services otherwise idle)."
        ),
    ]
    if not lags:
        return [*blocks, Para("Not measured.")]
    hop_names = sorted(
        {h for lag in lags.values() for h in lag["hops"]}, key=lambda h: (h != "gateway", h)
    )
    rows = [["design", "logouts", *hop_names]]
    for name, lag in lags.items():
        if lag["until_exp"]:
            lifetime = lag["token_lifetime_s"]
            until = f"until exp ({lifetime:.0f} s)" if lifetime else "until exp"
            cells = [until if _never_refused(lag, h) else "refused" for h in hop_names]
        else:
            cells = []
            for h in hop_names:
                hop = lag["hops"].get(h)
                cells.append(
                    f"{_ms(hop['p50_ms'])} / {_ms(hop['p99_ms'])} / {_ms(hop['max_ms'])}"
                    if hop
                    else "-"
                )
        rows.append([name, str(lag["samples"]), *cells])
    blocks += [Table.of(rows), Image("revocation")]
    options = results["options"]
    if not options.get("long"):
        blocks.append(
            Para(
                f"Default run: {options.get('revocation_samples')} logouts per design "
                "(--long takes 50); a design still accepting after "
                f"{options.get('revocation_limit_s')} s is sampled once."
            )
        )
    errors = [f"{n}: {e}" for n, lag in lags.items() for e in lag["errors"]]
    if errors:
        blocks.append(Bullets(tuple(errors)))
    return blocks


def _rotation_blocks(results: CrossoverResults) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "5. Signing-key rotation under load"),
        Para(
            "The verifiers take their keys from auth's JWKS (JWT_JWKS_URL). Under load (each "
            "design's own task mix), auth restarts with a new signing key, the old public key "
            "kept published (public-<kid>.pem beside the new key); then every Locust user logs "
            "in again, so tokens with the new kid reach every verifier, which refetches the "
            "JWKS once. A token signed before the rotation must still work at every hop "
            "(until its exp), and no request may fail. The refetches are the JWKS requests "
            "auth's own /metrics counted after its restart (http_requests_total on the JWKS "
            "route; the verifiers export no counter of their own for it), against the number "
            "of verifying processes."
        ),
    ]
    rotations = results["rotation"]
    if not rotations:
        return [*blocks, Para("Not measured (see the notes).")]
    rows = [
        [
            "designs",
            "requests",
            "failed",
            "auth restart ms",
            "old-key token",
            "new-key token",
            "JWKS refetches (verifiers)",
            "result",
        ]
    ]
    for r in rotations:
        old_ok = sum(v == 200 for v in r["old_token"].values())
        new_ok = sum(v == 200 for v in r["new_token"].values())
        rows.append(
            [
                ", ".join(r["designs"]),
                str(r["requests"]),
                str(r["failures"]),
                _num(r["auth_restart_ms"]),
                f"{old_ok}/{len(r['old_token'])} hops accept",
                f"{new_ok}/{len(r['new_token'])} hops accept",
                f"{r['jwks_fetches']} ({r['verifiers']})",
                "ok" if r["ok"] else "FAILED",
            ]
        )
    blocks.append(Table.of(rows))
    return blocks


def _model_blocks(results: CrossoverResults) -> list[Block]:
    models = model.build(results)
    shards = results["shards"]
    per_shard = shards["per_shard_ops"] if shards else None
    rate, hops, rtt = DEFAULT_QUERY["rate"], DEFAULT_QUERY["hops"], DEFAULT_QUERY["rtt_ms"]
    blocks: list[Block] = [
        Heading(2, "6. The model"),
        Para(
            f"`python -m loadtests.model --rate {rate:.0f} --hops {hops:g} --store-rtt-ms {rtt:g} "
            "--results results.json`: cores from the fitted CPU per request, session-store "
            "operations per second and the shards they need "
            + (
                f"(one shard: {per_shard:,.0f} ops/s, the lower of redis-benchmark's GET and SET "
                "in this run)"
                if per_shard
                else "(per-shard capacity not measured)"
            )
            + ", p50 latency and what the hops and the distance add, revocation lag."
        ),
    ]
    if not models:
        return [*blocks, Para("No design has hop measurements.")]
    predictions = [model.predict(m, rate, hops, rtt, per_shard) for m in models]
    blocks.append(Table.of(model.table(predictions, None)))
    errors = model.point_errors(results, models)
    worst_cpu = model.worst_error(errors, "cpu_us")
    splits = {m.name: model.hop_split(results["hops"]["designs"].get(m.name, [])) for m in models}
    extras = [v.post_extra_us for v in splits.values() if v.post_extra_us is not None]
    checks = [v.check_us for v in splits.values() if v.check_us is not None]
    why = (
        f"a POST costs {min(extras):,.0f} to {max(extras):,.0f} us more than a GET beyond its "
        f"extra verification (one check costs {min(checks):,.0f} to {max(checks):,.0f} us): the "
        "order's write (with an fsync) and orders' HTTP call to auth, which a line in "
        "verifications cannot separate from the checks; and CPU counters tick every 10 ms per "
        "process, over short windows on a shared 2-core machine"
        if extras and checks
        else "the windows are short and the machine is shared"
    )
    verdict = (
        "no CPU point measured"
        if worst_cpu is None
        else f"the CPU model is within {model.ERROR_GOAL_PCT:.0f} % on every measured point "
        f"(worst {worst_cpu:.1f} %)"
        if worst_cpu <= model.ERROR_GOAL_PCT
        else f"the CPU model is NOT within {model.ERROR_GOAL_PCT:.0f} % on every measured point "
        f"(worst {worst_cpu:.1f} %). Why: {why}"
    )
    blocks.append(Para(f"Model error on the measured points: {verdict}."))
    split_rows = [["design", "CPU us per check (GET, 1 -> 2 hops)", "POST beyond its checks, us"]]
    for name, split in splits.items():
        split_rows.append([name, _num(split.check_us), _num(split.post_extra_us)])
    blocks.append(Table.of(split_rows))
    rows = [["design", "point", "metric", "measured", "predicted", "err %"]]
    for e in errors:
        rows.append(
            [
                e.design,
                e.where,
                e.metric,
                f"{e.measured:,.2f}",
                f"{e.predicted:,.2f}",
                _num(e.error_pct, 1),
            ]
        )
    blocks.append(Table.of(rows))
    scen_rows = [["hops", "store RTT ms", "revocation bound", "fewest cores", "lowest p50"]]
    for s in model.scenarios(models, per_shard):
        scen_rows.append(
            [
                str(s.hops),
                f"{s.rtt_ms:g}",
                f"{s.bound_s:g} s" if s.bound_s else "none",
                s.cheapest or "none meets it",
                s.fastest or "-",
            ]
        )
    blocks += [Para("The model at 10,000 req/s:"), Table.of(scen_rows)]
    return blocks


def _reference_blocks(results: CrossoverResults) -> list[Block]:
    blocks: list[Block] = [Heading(2, "7. nginx reference and store shards")]
    ref = results["nginx"]
    if ref is None or not ref["available"]:
        blocks.append(Para(f"nginx reference: {ref['note'] if ref else 'not measured'}."))
    else:
        cpu = ref["cpu_us_per_request"]
        rows = [["proxy", "requests", "req/s", "CPU us per proxied request", "vs nginx"]]
        for name in ("nginx", "gateway", "gateway-edgeoff"):
            if name in cpu:
                ratio = cpu[name] / cpu["nginx"] if cpu.get("nginx") else None
                rows.append(
                    [
                        name,
                        _num(ref["requests"].get(name)),
                        _num(ref["rps"].get(name)),
                        _num(cpu[name], 1),
                        _num(ratio, 2, "x"),
                    ]
                )
        blocks += [
            Para(
                f"The same GET /orders (a bearer JWT) through nginx and through the gateway, "
                f"{ref['tool']} with {ref['connections']} connections for {ref['seconds']:g} s "
                f"each, in this run: {ref['note']}. The issue's goal is the gateway within 3x "
                "of nginx."
            ),
            Table.of(rows),
        ]
    shards = results["shards"]
    if shards:
        blocks.append(
            Para(
                f"One session-store shard: {shards['tool']} with {shards['clients']} clients, "
                f"{shards['requests']:,} requests each: GET {shards['get_rps']:,.0f} ops/s, SET "
                f"{shards['set_rps']:,.0f} ops/s; the model uses {shards['per_shard_ops']:,.0f} "
                "(the client shares the machine's cores with the server)."
            )
        )
    return blocks


def blocks(results: CrossoverResults) -> list[Block]:
    options = results["options"]
    progress = results["progress"]
    setup = results["setup"]
    head: list[Block] = [
        Heading(1, "The crossover"),
        Para(
            f"Run of {results['started']} to {results['finished']} on "
            f"{results['machine'].get('cpus')} CPUs (load average at the end "
            f"{results['machine'].get('load_average')}), "
            f"{'--long' if options.get('long') else 'default'} run: {progress['wall_s']:.0f} s "
            f"(estimated {progress['estimated_s']:.0f} s). Designs: "
            + ", ".join(d["name"] for d in results["designs"])
            + f". Locust: {setup.get('locust')}; keys: {setup.get('keys')}; logins hash with "
            f"argon2id {setup.get('argon2')} (logins are not measured here); the one-hop "
            f"windows use {setup.get('one_hop')}."
        ),
        Heading(2, "Which design when"),
        Para("Computed from this run's numbers and the model (loadtests/model.py):"),
        Bullets(tuple(which_design_when(results))),
    ]
    notes = results.get("notes") or []
    tail: list[Block] = []
    if notes:
        tail = [Heading(2, "Notes"), Bullets(tuple(notes))]
    return [
        *head,
        *_knee_blocks(results),
        *_hop_blocks(results),
        *_distance_blocks(results),
        *_revocation_blocks(results),
        *_rotation_blocks(results),
        *_model_blocks(results),
        *_reference_blocks(results),
        *tail,
    ]


# -- renderers ------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(content: Sequence[Block], images: dict[str, Path]) -> str:
    out: list[str] = []
    for block in content:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Para):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            header, *rows = block.rows
            lines = ["| " + " | ".join(_md_cell(c) for c in header) + " |"]
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif isinstance(block, Image):
            if block.key in images:
                out.append(f"![{IMAGES[block.key][1]}]({images[block.key].name})")
        else:
            out.append(f"```\n{block.text}\n```")
    return "\n\n".join(out) + "\n"


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; display: block; margin: 1rem 0; }
code, pre { background: #f6f6f6; }
"""


def _inline(text: str) -> str:
    """Escape, then render `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(content: Sequence[Block], images: dict[str, Path], title: str) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
    ]
    for block in content:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            out.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            header, *rows = block.rows
            out.append("<table><thead><tr>")
            out.append("".join(f"<th>{html.escape(c)}</th>" for c in header))
            out.append("</tr></thead><tbody>")
            for row in rows:
                out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
            out.append("</tbody></table>")
        elif isinstance(block, Image):
            path = images.get(block.key)
            if path is not None:
                data = base64.b64encode(path.read_bytes()).decode()
                alt = html.escape(IMAGES[block.key][1])
                out.append(f'<img alt="{alt}" src="data:image/png;base64,{data}">')
        else:
            out.append(f"<pre>{html.escape(block.text)}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# -- plots ----------------------------------------------------------------------------------------


def plots(results: CrossoverResults, out: Path) -> dict[str, Path]:
    """The crossover charts as PNGs in `out`; returns those drawn, by key."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn: dict[str, Path] = {}
    names = [d["name"] for d in results["designs"]]
    colors = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}

    def save(key: str, figure: object) -> None:
        path = out / IMAGES[key][0]
        figure.tight_layout()  # type: ignore[attr-defined]
        figure.savefig(path, dpi=90)  # type: ignore[attr-defined]
        plt.close(figure)  # type: ignore[arg-type]
        drawn[key] = path

    knee = results["knee"]["designs"]
    if knee:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for name, d in knee.items():
            steps = _decisive(d["steps"])
            xs = [s["offered_rps"] for s in steps]
            ax.plot(
                xs,
                [s["p99_ms"] or 0 for s in steps],
                "-o",
                color=colors.get(name),
                label=f"{name} p99",
            )
            ax.plot(
                xs,
                [s["p50_ms"] or 0 for s in steps],
                ":",
                color=colors.get(name),
                label=f"{name} p50",
            )
            limited = [s for s in steps if s["generator_limited"]]
            if limited:
                ax.plot(
                    [s["offered_rps"] for s in limited], [s["p99_ms"] or 0 for s in limited], "kx"
                )
        ax.axhline(results["knee"]["slo_ms"], color="red", linewidth=1, label="SLO")
        ax.set_yscale("log")
        ax.set_xlabel("offered load (req/s)")
        ax.set_ylabel("latency (ms, log)")
        ax.set_title("Latency against offered load (x: Locust was the limit)")
        ax.legend(fontsize=7, ncol=2)
        save("knee", fig)
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
        shown = [n for n in names if n in knee]
        left.bar(
            shown,
            [float(knee[n]["knee_rps"] or 0) for n in shown],
            color=[colors[n] for n in shown],
        )
        left.set_ylabel("req/s held at p99 <= SLO")
        left.set_title("Capacity at the knee")
        right.bar(
            shown,
            [float(knee[n]["cpu_us_per_request"] or 0) for n in shown],
            color=[colors[n] for n in shown],
        )
        right.set_ylabel("CPU us per request (at the knee)")
        right.set_title("Cost at the knee")
        for axis in (left, right):
            axis.tick_params(axis="x", rotation=30, labelsize=8)
        save("capacity", fig)
    models = model.build(results)
    if models:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
        metrics: tuple[tuple[str, str, Callable[[HopPoint], float]], ...] = (
            ("cpu_us", "CPU us per request", lambda p: p["cpu_us_total"]),
            (
                "store_ops",
                "session-store ops per request",
                lambda p: p["store_ops_per_request"].get("session_store", 0.0),
            ),
            ("p50_ms", "p50 latency (ms)", lambda p: float(p["p50_ms"] or 0)),
        )
        for axis, (metric, label, value) in zip(axes, metrics, strict=True):
            for m in models:
                points = results["hops"]["designs"].get(m.name, [])
                line = {"cpu_us": m.cpu, "store_ops": m.store_ops, "p50_ms": m.latency}[metric]
                axis.plot(
                    [p["checks_per_request"] for p in points],
                    [value(p) for p in points],
                    "o",
                    color=colors.get(m.name),
                )
                xs = [1.0, 5.0]
                axis.plot(
                    xs,
                    [line["intercept"] + line["slope"] * x for x in xs],
                    "--",
                    color=colors.get(m.name),
                    label=m.name,
                )
            axis.set_xlabel("verifying hops (checks per request)")
            axis.set_ylabel(label)
        axes[0].set_title("Cost against hops (dashed: fit, to 5 hops)")
        axes[0].legend(fontsize=7)
        save("hops", fig)
    distant = results["distance"]["designs"]
    if distant:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, far in distant.items():
            pts = sorted(far, key=lambda p: p["measured_rtt_ms"])
            ax.plot(
                [p["measured_rtt_ms"] for p in pts],
                [p["p50_ms"] or 0 for p in pts],
                "-o",
                color=colors.get(name),
                label=name,
            )
        ax.set_xlabel("session store RTT (ms, measured)")
        ax.set_ylabel("p50 latency of GET /orders (ms)")
        ax.set_title(f"Latency against store distance ({results['distance']['method']})")
        ax.legend(fontsize=8)
        save("distance", fig)
    lags = {n: lag for n, lag in results["revocation"].items() if lag["hops"]}
    if lags:
        fig, ax = plt.subplots(figsize=(8, 3.8))
        hop_names = sorted(
            {h for lag in lags.values() for h in lag["hops"]}, key=lambda h: (h != "gateway", h)
        )
        width = 0.8 / max(len(lags), 1)
        for i, (name, lag) in enumerate(lags.items()):
            values = [_p99(lag, h) for h in hop_names]
            ax.bar(
                [j + i * width for j in range(len(hop_names))],
                values,
                width,
                color=colors.get(name),
                label=name + (" (until exp)" if lag["until_exp"] else ""),
            )
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(hop_names))], hop_names)
        ax.set_ylabel("p99 ms from logout to refusal")
        ax.set_title("Revocation lag per hop")
        ax.legend(fontsize=7)
        save("revocation", fig)
    return drawn


# -- files ----------------------------------------------------------------------------------------


def write(results: CrossoverResults, out: Path) -> None:
    """report.md, report.html, the PNGs and model.txt (the model's default query) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    images = plots(results, out)
    content = blocks(results)
    (out / "report.md").write_text(to_markdown(content, images))
    (out / "report.html").write_text(to_html(content, images, "authscale: the crossover"))
    query = model.report(
        results,
        DEFAULT_QUERY["rate"],
        DEFAULT_QUERY["hops"],
        DEFAULT_QUERY["rtt_ms"],
        None,
        "results.json",
    )
    (out / "model.txt").write_text(query + "\n")


def summary(results: CrossoverResults) -> str:
    """A few lines for the terminal: the knees, the hop fits, the distance, revocation,
    rotation and nginx figures."""
    lines = []
    knee = results["knee"]["designs"]
    for name, d in knee.items():
        lines.append(
            f"knee {name}: {_num(d['knee_rps'])} req/s ({d['limit']}), "
            f"{_num(d['cpu_us_per_request'])} us CPU/req"
        )
    for m in model.build(results):
        lines.append(
            f"hops {m.name}: CPU {m.cpu['intercept']:,.0f} + {m.cpu['slope']:,.0f}/hop us "
            f"(max err {_num(m.cpu['max_abs_error_pct'], 1)} %)"
        )
    lines.append(f"distance: {results['distance']['method']}")
    for name, lag in results["revocation"].items():
        worst = model.worst_lag_ms(lag)
        lines.append(
            f"revocation {name}: "
            + ("until exp" if lag["until_exp"] else f"worst hop p99 {_num(worst)} ms")
        )
    for r in results["rotation"]:
        lines.append(
            f"rotation ({', '.join(r['designs'])}): {r['failures']} failed, "
            f"{r['jwks_fetches']} refetches, {'ok' if r['ok'] else 'NOT ok'}"
        )
    ref = results["nginx"]
    if ref and ref["available"]:
        lines.append(f"nginx: gateway x{ref['ratio']} (edge auth off x{ref['ratio_edge_off']})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m loadtests.crossover.report RESULTS.json [OUT_DIR]", file=sys.stderr)
        return 2
    source = Path(args[0])
    write(load(source), Path(args[1]) if len(args) > 1 else source.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
