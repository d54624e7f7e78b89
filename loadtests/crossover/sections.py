"""The report's sections on the load windows: capacity at the knee, verifying hops, distance to
the session store, and the model fitted to them; each a list of document blocks."""

from __future__ import annotations

from loadtests import model
from loadtests.crossover.document import Block, Image, Para, Table, ms, num, section
from loadtests.crossover.knee import decisive
from loadtests.crossover.results import CrossoverResults, HopPoint, KneeDesign

NOT_MEASURED = Para("Not measured.")


def knee_blocks(results: CrossoverResults) -> list[Block]:
    knee = results["knee"]
    designs = knee["designs"]
    blocks = section(
        "1. Capacity at the knee",
        "Open-model load (loadtests/load): GET /orders through the gateway at scheduled "
        "times whether or not earlier requests were answered, latency from each request's "
        "intended start (HDR histograms), the load process on a CPU of its own and the stack "
        "pinned to the others where there are two or more. The offered rate is stepped up "
        f"({', '.join(f'{r:g}' for r in knee['ladder'])} req/s planned, and on past them "
        "while a design still holds; "
        f"{results['options'].get('step_s')} s measured per step after "
        f"{results['options'].get('settle_s')} s to settle; the designs of each settings group "
        f"interleaved step by step) until p99 passes {knee['slo_ms']:g} ms or a request "
        "fails; then each knee is bisected between the last rate held and the first that was "
        "not, until they are within "
        f"{100 * float(str(results['options'].get('refine_to', 0.05))):g} % (runs recorded before "
        "the bisection stop at the ladder's step). A window past the SLO is measured again "
        "before it counts (up to three windows at the first step, two at the others): a "
        "rate holds if one of its windows did, since a short window's p99 is its few slowest "
        "requests, which a burst elsewhere on the machine can spoil. CPU per request from "
        "every service's /metrics and both stores' INFO, the idle baseline taken out. "
        "A window where the generator could not keep its schedule (send lag p99 over 10 ms, "
        "or a load process over 90 % of a core) is marked L and not counted: it is measured "
        "again, and ends the search if it stays so (runs recorded before the open-model "
        "knee: a Locust process over 90 % of a core, or short of the pace).",
    )
    if not designs:
        return [*blocks, NOT_MEASURED]
    best = max((float(d["knee_rps"] or 0) for d in designs.values()), default=0.0) or 1.0
    header = ["design", "knee (req/s offered)", "served", "p99 ms", "CPU us/req (services)"]
    header += ["CPU us/req (+ stores)", "vs best", "ended by", "by round"]
    blocks.append(
        Table.with_header(
            header,
            (
                [
                    name,
                    num(d["knee_rps"]),
                    num(d["knee_achieved_rps"]),
                    ms(d["knee_p99_ms"]),
                    num(d["cpu_us_services"]),
                    num(d["cpu_us_per_request"]),
                    f"{float(d['knee_rps'] or 0) / best:.2f}" if d["knee_rps"] else "-",
                    d["limit"],
                    ", ".join(num(k) for k in d["by_round"]),
                ]
                for name, d in designs.items()
            ),
        )
    )
    names = list(designs)
    ratios = knee["ratios"]
    blocks.append(
        Table.with_header(
            ["knee ratio (row / column)", *names],
            (
                [
                    a,
                    *(
                        f"{ratios.get(a, {}).get(b, 0):.2f}" if b in ratios.get(a, {}) else "-"
                        for b in names
                    ),
                ]
                for a in names
            ),
        )
    )
    blocks.append(
        Para(
            "p99 (ms) at each offered rate measured, in order (x: not held, past the knee; "
            "L: the load generator was the limit):"
        )
    )
    blocks += [
        Table.with_header(
            ["design", "offered req/s: p99 ms"],
            ([name, _step_cells(d)] for name, d in designs.items()),
        ),
        Image("knee"),
        Image("capacity"),
    ]
    return blocks


def _step_cells(design: KneeDesign) -> str:
    """Each offered rate's decisive p99, marked past the knee (x) or generator-bound (L)."""
    cells = []
    for s in decisive(design["steps"]):
        mark = ("" if s["held"] else " x") + (" L" if s["generator_limited"] else "")
        cells.append(f"{s['offered_rps']:g}: {ms(s['p99_ms'])}{mark}")
    return ", ".join(cells)


def hop_blocks(results: CrossoverResults) -> list[Block]:
    hops = results["hops"]
    blocks = section(
        "2. Verifying hops",
        f"Each design at {hops['rate_rps']:g} req/s: 1 hop (GET /orders through a gateway "
        "with GATEWAY_EDGE_AUTH=0: only orders verifies), 2 hops (GET through the gateway), "
        "3 hops (POST /orders: orders also asks auth). x is the verifications per request "
        "the services counted (the hybrid's gateway verifies even with edge auth off, to "
        "exchange the session). Fitted per design by least squares: y = a + b x; the error "
        "is (predicted - measured) / measured at each point.",
    )
    models = {m.name: m for m in model.build(results)}
    header = ["design", "CPU us/req: a", "b per hop", "max err %", "store ops: a", "b per hop"]
    header += ["p50 ms: a", "b per hop", "max err %"]
    blocks.append(
        Table.with_header(
            header,
            (
                [
                    name,
                    num(m.cpu["intercept"]),
                    num(m.cpu["slope"]),
                    num(m.cpu["max_abs_error_pct"], 1),
                    num(m.store_ops["intercept"], 2),
                    num(m.store_ops["slope"], 2),
                    num(m.latency["intercept"], 2),
                    num(m.latency["slope"], 2),
                    num(m.latency["max_abs_error_pct"], 1),
                ]
                for name, m in models.items()
            ),
        )
    )
    header = ["design", "hops", "checks/req", "CPU us/req", "predicted", "err %"]
    header += ["store ops/req", "predicted", "p50 ms", "predicted", "err %", "failures"]
    rows = [
        _hop_row(name, p, models.get(name))
        for name, points in hops["designs"].items()
        for p in points
    ]
    blocks += [Table.with_header(header, rows), Image("hops")]
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


def _hop_row(name: str, p: HopPoint, fitted: model.DesignModel | None) -> list[str]:
    """One hop window, measured against what its design's fitted lines predict."""
    x = p["checks_per_request"]
    cpu_p = fitted.cpu["intercept"] + fitted.cpu["slope"] * x if fitted else None
    ops_p = fitted.store_ops["intercept"] + fitted.store_ops["slope"] * x if fitted else None
    lat_p = fitted.latency["intercept"] + fitted.latency["slope"] * x if fitted else None
    ops = p["store_ops_per_request"].get("session_store", 0.0)
    return [
        name,
        f"{p['hops']} ({'POST' if p['task'] == 'post' else 'GET'}, {p['gateway']})",
        f"{x:.2f}",
        num(p["cpu_us_total"]),
        num(cpu_p),
        num(model.error_pct(cpu_p, p["cpu_us_total"]) if cpu_p is not None else None, 1),
        f"{ops:.2f}",
        num(ops_p, 2),
        ms(p["p50_ms"]),
        num(lat_p, 2),
        num(model.error_pct(lat_p, float(p["p50_ms"] or 0)) if lat_p is not None else None, 1),
        str(p["failures"]),
    ]


def distance_blocks(results: CrossoverResults) -> list[Block]:
    distance = results["distance"]
    blocks = section(
        "3. Distance to the session store",
        f"Method: {distance['method']} ({distance['method_note']}). GET /orders (2 hops) at "
        f"{distance['rate_rps']:g} req/s with the session store's round trip raised by "
        f"{', '.join(f'{r:g}' for r in distance['rtts_ms'])} ms; the RTT column is a "
        "PING's median on the path the services use.",
    )
    if not distance["designs"]:
        return [*blocks, NOT_MEASURED]
    rtts = distance["rtts_ms"]
    measured_row = ["(measured RTT ms)"]
    for rtt in rtts:
        values = [
            p["measured_rtt_ms"]
            for ps in distance["designs"].values()
            for p in ps
            if p["added_rtt_ms"] == rtt
        ]
        measured_row.append(f"{values[0]:.2f}" if values else "-")
    rows = [[*measured_row, ""]]
    for name, points in distance["designs"].items():
        cells = []
        for rtt in rtts:
            found = [p for p in points if p["added_rtt_ms"] == rtt]
            cells.append(f"{ms(found[0]['p50_ms'])} / {ms(found[0]['p99_ms'])}" if found else "-")
        line = distance["fits"].get(name)
        rows.append([name, *cells, num(line["slope"] if line else None, 2)])
    header = ["design", *(f"+{r:g} ms" for r in rtts), "ms per ms RTT"]
    return [
        *blocks,
        Para("p50 / p99 latency (ms):"),
        Table.with_header(header, rows),
        Image("distance"),
    ]


def model_blocks(results: CrossoverResults) -> list[Block]:
    models = model.build(results)
    per_shard = model.per_shard_ops(results)
    rate, hops, rtt = (model.DEFAULT_QUERY[k] for k in ("rate", "hops", "rtt_ms"))
    blocks = section(
        "6. The model",
        f"`python -m loadtests.model --rate {rate:.0f} --hops {hops:g} --store-rtt-ms {rtt:g} "
        "--results results.json`: cores from the fitted CPU per request, session-store "
        "operations per second and the shards they need "
        + (
            f"(one shard: {per_shard:,.0f} ops/s, the lower of redis-benchmark's GET and SET "
            "in this run)"
            if per_shard
            else "(per-shard capacity not measured)"
        )
        + ", p50 latency and what the hops and the distance add, revocation lag.",
    )
    if not models:
        return [*blocks, Para("No design has hop measurements.")]
    predictions = [model.predict(m, rate, hops, rtt, per_shard) for m in models]
    blocks.append(Table.of(model.table(predictions, None)))
    errors = model.point_errors(results, models)
    splits = {m.name: model.hop_split(results["hops"]["designs"].get(m.name, [])) for m in models}
    blocks.append(Para(f"Model error on the measured points: {_verdict(errors, splits)}."))
    blocks.append(
        Table.with_header(
            ["design", "CPU us per check (GET, 1 -> 2 hops)", "POST beyond its checks, us"],
            ([name, num(s.check_us), num(s.post_extra_us)] for name, s in splits.items()),
        )
    )
    blocks.append(
        Table.with_header(
            ["design", "point", "metric", "measured", "predicted", "err %"],
            (
                [
                    e.design,
                    e.where,
                    e.metric,
                    f"{e.measured:,.2f}",
                    f"{e.predicted:,.2f}",
                    num(e.error_pct, 1),
                ]
                for e in errors
            ),
        )
    )
    scenarios = Table.with_header(
        ["hops", "store RTT ms", "revocation bound", "fewest cores", "lowest p50"],
        (
            [
                str(s.hops),
                f"{s.rtt_ms:g}",
                f"{s.bound_s:g} s" if s.bound_s else "none",
                s.cheapest or "none meets it",
                s.fastest or "-",
            ]
            for s in model.scenarios(models, per_shard)
        ),
    )
    return [*blocks, Para("The model at 10,000 req/s:"), scenarios]


def _verdict(errors: list[model.PointError], splits: dict[str, model.HopSplit]) -> str:
    """Whether the CPU model meets its goal on the measured points, and if not, why not."""
    worst_cpu = model.worst_error(errors, "cpu_us")
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
    return (
        "no CPU point measured"
        if worst_cpu is None
        else f"the CPU model is within {model.ERROR_GOAL_PCT:.0f} % on every measured point "
        f"(worst {worst_cpu:.1f} %)"
        if worst_cpu <= model.ERROR_GOAL_PCT
        else f"the CPU model is NOT within {model.ERROR_GOAL_PCT:.0f} % on every measured point "
        f"(worst {worst_cpu:.1f} %). Why: {why}"
    )
