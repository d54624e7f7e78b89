"""The report of one `make bench` run: report.html (self-contained, charts embedded, readable
offline) and report.md (charts as PNGs beside it), both rendered from results.json alone.

Both files come from one list of blocks, so they say the same thing. Every number they print is
a figure of the file, formatted; the one derived figure is capacity per core (charts.per_core).
The report knows no design by name: rows follow results["designs"], the control last.
`python -m loadtests.measure.report RESULTS.json [OUT_DIR]` re-renders a recorded run.
"""

from __future__ import annotations

import base64
import html
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from loadtests import microbench
from loadtests.measure import gauge, stats
from loadtests.measure.analysis import judged, request_type_spread, type_cpu
from loadtests.measure.charts import CHARTS, draw, per_core
from loadtests.measure.schema import CONTROL, Design, Interval, Results, load

TITLE = "authscale: which design when, measured"
DEFINITIONS = "docs/results.md"

# -- the document ---------------------------------------------------------------------------------


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
    id: str = ""

    @classmethod
    def of(cls, header: Sequence[str], rows: Iterable[Sequence[str]], id: str = "") -> Table:
        return cls((tuple(header), *(tuple(r) for r in rows)), id)


@dataclass(frozen=True)
class Image:
    key: str  # in charts.CHARTS


@dataclass(frozen=True)
class Banner:
    """The self-checks: red with every failed one, green when all passed; those the run had
    no intervals to judge (one run per figure) listed apart, neither failed nor passed."""

    failed: tuple[tuple[str, str], ...]  # (name, detail)
    passed: tuple[str, ...]
    checked: bool = True  # False: the file holds no self-checks at all
    unjudged: tuple[tuple[str, str], ...] = ()  # (name, detail)


Block = Heading | Para | Bullets | Table | Image | Banner

NOT_JUDGED = "nothing in this run to judge them by: one run per figure, or not measured"

# -- numbers, formatted once for every table ------------------------------------------------------


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value) < 100 else f"{value:,.0f}"


def ops(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def span(bounds: Sequence[float], fmt: Any) -> str:
    """A 95 % interval [lo, hi] as `lo to hi` (a dash would read as a minus sign)."""
    return f"{fmt(bounds[0])} to {fmt(bounds[1])}"


def interval(figure: Mapping[str, Any], fmt: Any) -> str:
    """A repeated figure's 95 % interval; a figure of one run has none (its ci95 is [x, x])."""
    repeated = stats.has_interval(cast(Interval, figure))
    return span(figure["ci95"], fmt) if repeated else stats.ONE_RUN


def plain(value: object) -> str:
    """A value of the file as it is (settings, environment, method): nothing rounded."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {plain(v)}" for k, v in value.items())
    return str(value)


# -- the headline table ---------------------------------------------------------------------------

HEADLINE = (
    "design",
    "capacity (req/s)",
    "95 % interval",
    "per core (req/s)",
    "CPU per request (us)",
    "95 % interval",
    "at (req/s)",
    "p50 / p99 (ms)",
    "auth CPU per hop (us, 95 % interval)",
    "store ops per request",
    "revocation lag p99 (ms)",
)


def ordered(results: Results) -> list[tuple[str, Design]]:
    """The designs in the file's order, the control last."""
    designs = results["designs"]
    return [(n, d) for n, d in designs.items() if n != CONTROL] + [
        (n, d) for n, d in designs.items() if n == CONTROL
    ]


def headline_row(results: Results, name: str, design: Design) -> tuple[str, ...]:
    capacity = design["capacity_rps"]
    cpu = design["cpu_us_per_request"]
    latency = design["latency_ms"]
    per_hop = design["auth_cpu_us_per_hop"]
    lag = design["revocation_lag_ms"]
    return (
        name,
        rate(capacity["median"]) if capacity else "-",
        interval(capacity, rate) if capacity else "-",
        rate(per_core(results, capacity["median"])) if capacity else "-",
        us(cpu["median"]) if cpu else "-",
        interval(cpu, us) if cpu else "-",
        rate(cpu["offered_rps"]) if cpu else "-",
        f"{ms(latency['p50'])} / {ms(latency['p99'])} at {rate(latency['offered_rps'])}"
        if latency
        else "-",
        f"{us(per_hop['median'])} ({span(per_hop['ci95'], us)})" if per_hop else "-",
        ops(design["store_ops_per_request"]),
        ms(lag["p99"]) if lag else "until exp" if design.get("revoked_until_exp") else "-",
    )


def headline(results: Results) -> Table:
    return Table.of(
        HEADLINE, (headline_row(results, n, d) for n, d in ordered(results)), id="headline"
    )


HEADLINE_NOTE = (
    "Capacity: the highest offered rate served within 2 % with p99 within the SLO; per core: "
    "divided by the system's CPUs. CPU: every process and both stores, idle taken out, at the "
    "rate shown. Auth CPU per hop: the design's cost per verifying hop minus the control's. "
    "Medians of the repeats with the 95 % interval of their mean (a capacity's reaches at "
    "least to the rate its searches stopped holding at); `-`: no such figure for that design "
    f"in the file. Every figure is defined in `{DEFINITIONS}`."
)

# -- the sections ---------------------------------------------------------------------------------


def banner(results: Results) -> Banner:
    checks = results.get("checks")
    if checks is None:
        return Banner((), (), checked=False)
    return Banner(
        tuple((c["name"], c["detail"]) for c in checks if judged(c) and not c["ok"]),
        tuple(c["name"] for c in checks if c["ok"]),
        unjudged=tuple((c["name"], c["detail"]) for c in checks if not judged(c)),
    )


def run_line(results: Results) -> str:
    env = results["environment"]
    kind = "--quick" if env.get("quick") else "default"
    # The machine: its figures are this CPU's (the same code measured 1.2-2.0x the CPU per
    # request on another 2-CPU host, an AMD EPYC, as on the reference's Intel Xeon).
    machine = ", ".join(x for x in (env.get("cpu_model"), env.get("kernel")) if x)
    return (
        f"Run of {env['started']} to {env['finished']} ({kind} run) on {env['cpus']} CPUs"
        f"{f' ({machine})' if machine else ''}: "
        f"the load generator on CPU {plain(env['load_cpus'])}, the system on CPU "
        f"{plain(env['system_cpus'])}."
    )


def chart_blocks(drawn: Collection[str]) -> list[Block]:
    titles = {
        "capacity": "Capacity per core",
        "cpu_by_process": "CPU per request, by process",
        "latency": "Latency against offered load",
        "hops": "Cost against hops, with the control",
        "distance": "Latency against the session store's distance",
        "revocation": "Revocation lag per hop",
    }
    out: list[Block] = [Heading(2, "Charts")]
    for key, (_, caption) in CHARTS.items():
        out.append(Heading(3, titles[key]))
        out.append(Image(key) if key in drawn else Para(f"No figures for this chart: {caption}."))
    return out


def _flatten(prefix: str, value: object) -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        rows: list[tuple[str, str]] = []
        for key, inner in value.items():
            rows += _flatten(f"{prefix} {key}".strip(), inner)
        return rows
    return [(prefix, plain(value))]


def model_blocks(results: Results) -> list[Block]:
    model = results.get("model")
    if not model:
        return [Heading(2, "The model"), Para("No model in this results file.")]
    points = model.get("points") or []
    return [
        Heading(2, "The model"),
        Para(
            "Built bottom-up from the measured parts below, then checked against every measured "
            "chain point beyond k = 1 (which calibrates each design's edge) and every distance "
            "point, each predicted from the design's other distance points (error: model against "
            "measured, in %)."
        ),
        Table.of(("part", "value"), _flatten("", model.get("parts") or {}), id="model-parts"),
        Table.of(
            (
                "design",
                "kind",
                "x",
                "CPU measured (us)",
                "CPU model (us)",
                "CPU error %",
                "p50 measured (ms)",
                "p50 model (ms)",
                "p50 error %",
            ),
            (
                (
                    p["design"],
                    p["kind"],
                    plain(p["x"]),
                    us(p["cpu_measured"]),
                    us(p["cpu_model"]),
                    f"{p['cpu_error_pct']:+.1f}",
                    f"{p['p50_measured']:.2f}",
                    f"{p['p50_model']:.2f}",
                    f"{p['p50_error_pct']:+.1f}",
                )
                for p in points
            ),
            id="model-points",
        ),
    ]


MICROBENCH_KEYS = ("microbench", "microbench_placement")  # shown as their own table


def microbench_blocks(results: Results) -> list[Block]:
    """The per-check micro-benchmark's rows (method.microbench), where it ran, and which rows
    the model and the self-checks read."""
    method: Mapping[str, Any] = results["method"]
    rows = method.get("microbench") or []
    if not rows:
        return []
    placement = method.get("microbench_placement") or {}
    cpus = placement.get("cpus") or []
    where = (
        f"pinned to CPU {plain(cpus)}" + (", kept awake" if placement.get("kept_awake") else "")
        if cpus
        else "not pinned"
    )
    gap = placement.get("gap_ms")
    timed = (
        "each call timed on its own less the same timing around no call"
        if placement.get("timing") == microbench.PACED_TIMING
        else "less the same loop making no call (each block timed whole, its waits included)"
    )
    paced = (
        f" Rows marked (paced): one call every {gap:g} ms, the chain's pace, {timed}; the "
        "model counts a figure below zero (a check too cheap to resolve) as 0. Each "
        "design's check_us is its paced row (a JWT carried by a cookie: the JWT's row and the "
        "Cookie field's read)."
        if gap
        else " Each design's check_us is its back-to-back row (a run before the paced ones)."
    )
    return [
        Heading(3, "The per-check micro-benchmark"),
        Para(f"In-process, {where}. Back to back: calls in a tight loop.{paced}"),
        Table.of(
            ("call", "CPU (us)", "wall (us)", "against", "ratio (CPU)"),
            (
                (
                    row["name"],
                    f"{row['cpu_us']:,.2f}",
                    f"{row['wall_us']:,.2f}",
                    row.get("baseline") or "-",
                    "-" if row.get("ratio_cpu") is None else f"{row['ratio_cpu']:.2f}x",
                )
                for row in rows
            ),
            id="microbench",
        ),
    ]


def machine_blocks(results: Results) -> list[Block]:
    """How the machine moved during the CPU-per-request windows (gauge.py), and how much of
    CPU per request's scatter followed it: none for a run without the spinners' laps."""
    found = results.get("machine")
    if not found:
        return []

    def number(value: float | None, fmt: str) -> str:
        return "-" if value is None else fmt.format(value)

    rows = [
        (
            "the spinners' lap (the system's CPUs)",
            f"{found['lap_us']:,.1f}",
            f"{found['lap_cv_pct']:.1f}",
            number(found["r"], "{:.2f}"),
            number(found["elasticity"], "{:.2f}"),
            number(found["explained_pct"], "{:.0f}"),
        )
    ]
    if found.get("load_us") is not None:
        rows += [
            (
                "the load generator's CPU per request (its own CPU)",
                number(found.get("load_us"), "{:,.1f}"),
                number(found.get("load_cv_pct"), "{:.1f}"),
                number(found.get("load_r"), "{:.2f}"),
                number(found.get("load_elasticity"), "{:.2f}"),
                number(found.get("load_explained_pct"), "{:.0f}"),
            ),
            ("both", "-", "-", "-", "-", number(found.get("both_explained_pct"), "{:.0f}")),
        ]
    blocks: list[Block] = [
        Heading(3, "The machine during the windows"),
        Para(
            "The idle-priority spinners that keep the system's CPUs awake run one empty loop "
            "in the gaps the system leaves them and count their laps; each window records "
            "their CPU time per lap, and the load generator's own CPU per request on its CPU "
            "(the same work each time). Over the CPU-per-request windows, within designs (each "
            "design's own level taken out, on the log scale): how much each gauge moved, and "
            "how closely CPU per request followed it (machine_steady: the lap's CV within "
            f"{gauge.STEADY_LAP_CV_PCT:g} %). A correlation, not a proof of cause."
        ),
        Table.of(
            (
                "gauge",
                "median us",
                "CV %",
                "r with CPU per request",
                "% CPU per 1 %",
                "variance explained %",
            ),
            rows,
            id="machine",
        ),
        Para(
            f"Over {found['windows']} windows, CPU per request moved by a CV of "
            f"{found['cpu_cv_pct']:.1f} % within designs"
            + (
                ""
                if found.get("residual_cv_pct") is None
                else f"; what moved with neither gauge, {found['residual_cv_pct']:.1f} %"
            )
            + "."
        ),
    ]
    if found.get("judged_windows"):  # a run from before Pace judged none
        blocks.append(
            Para(
                f"Of the run's {found['judged_windows']} windows judged (from its "
                f"{gauge.MIN_SEEN}th with a lap on, warm-ups counted), {found['slow_windows']} "
                "were measured "
                "while the spinners' lap ran over "
                f"{plain(results['method'].get('slow_pct'))} % slower than the run's usual "
                "(its median so far); "
                f"{found['replaced_windows']} capacity windows that failed then were measured "
                "again and count in no figure, nor in the latency chart (a window that held on "
                "a slow machine held)."
            )
        )
    return blocks


def method_blocks(results: Results) -> list[Block]:
    env: Mapping[str, Any] = results["environment"]
    shown = (
        ("CPUs", "cpus"),
        ("load generator's CPUs", "load_cpus"),
        ("system's CPUs", "system_cpus"),
        ("isolated (load and system on separate CPUs)", "isolated"),
        ("load average at the start (1, 5, 15 min)", "load_average"),
        ("started", "started"),
        ("finished", "finished"),
        ("wall time (s)", "wall_s"),
        ("quick run", "quick"),
        ("CPU model", "cpu_model"),
        ("kernel", "kernel"),
        ("Python", "python"),
    )
    out: list[Block] = [
        Heading(2, "Method and environment"),
        Para(run_line(results)),
        Table.of(("", "value"), ((label, plain(env[key])) for label, key in shown if key in env)),
        *machine_blocks(results),
        Heading(3, "Packages"),
        Table.of(("package", "version"), sorted(env["packages"].items())),
        Heading(3, "Settings of the run"),
        Table.of(
            ("setting", "value"),
            ((k, plain(v)) for k, v in results["method"].items() if k not in MICROBENCH_KEYS),
        ),
        *microbench_blocks(results),
    ]
    notes = results.get("notes")
    if notes:
        out += [Heading(2, "Notes"), Bullets(tuple(notes))]
    return out


def windows(count: int) -> str:
    return f"{count} window" + ("" if count == 1 else "s")


def _type_cpu(found: Mapping[str, Any] | None) -> tuple[str, str]:
    """A request type's CPU per request and its interval, as two cells (a file from before the
    repeats holds one run)."""
    figure = type_cpu(found)
    if figure is None:
        return "-", "-"
    return us(figure["median"]), interval(figure, us)


def _type_para(results: Results, kind: str, what: str) -> Para:
    spread = request_type_spread(results["designs"], kind)
    return Para(what + ("" if spread is None else " " + spread.sentence))


def write_blocks(results: Results) -> list[Block]:
    """POST /orders, measured as its own request type (never as a hop)."""
    rows = [
        (
            name,
            rate(post.get("offered_rps")),
            *_type_cpu(post),
            f"{ms(post.get('p50_ms'))} / {ms(post.get('p99_ms'))}",
            plain(post.get("failures")),
        )
        for name, design in ordered(results)
        if (post := design.get("post"))
    ]
    if not rows:
        return []
    repeats = results["method"].get("type_repeats", 1)
    return [
        Heading(2, "The write: POST /orders"),
        _type_para(
            results,
            "post",
            "An order stored with fsync, the caller's credential checked at the gateway, "
            f"orders and auth: its own request type, {windows(repeats)} per design at the rate "
            "shown; CPU per request, the median of the windows with the 95 % interval of their "
            "mean; p50 / p99 of all their requests together.",
        ),
        Table.of(
            (
                "design",
                "at (req/s)",
                "CPU per request (us)",
                "95 % interval",
                "p50 / p99 (ms)",
                "failed",
            ),
            rows,
        ),
    ]


def _credential_row(name: str, design: Design) -> tuple[str, ...]:
    size = design.get("credential_bytes")
    login = design.get("login")
    return (
        name,
        "-" if size is None else f"{size:,}",
        *_type_cpu(login),
        ms(login["p50_ms"] if login else None),
        plain(login["failures"] if login else "-"),
    )


def credential_blocks(results: Results) -> list[Block]:
    """What a client holds and what getting it costs: the credential's bytes on every request
    and one login, per design."""
    rows = [
        _credential_row(name, design)
        for name, design in ordered(results)
        if design.get("login") or design.get("credential_bytes") is not None
    ]
    if not rows:
        return []
    method = results["method"]
    at = f" at {rate(method['login_rps'])} req/s" if "login_rps" in method else ""
    argon2 = f" ({plain(method['argon2'])})" if "argon2" in method else ""
    repeats = method.get("type_repeats", 1)
    spread = request_type_spread(results["designs"], "login")
    return [
        Heading(2, "The credential and the login"),
        Para(
            "Credential: the bytes of the headers that carry it on each GET /orders as the "
            "bench sent them (`Authorization`, or `Cookie` and `X-CSRF-Token`), `name: value` "
            f"and CRLF each, the median over the bench's users. Login: {windows(repeats)}{at} "
            "of the design's login through the gateway; CPU per login, every process and both "
            "stores, the median of the windows with the 95 % interval of their mean. "
            f"The bench's accounts hash their passwords with cheap argon2id settings{argon2}: a "
            "real login's CPU is mostly its password hash, the same for every design; what "
            "differs between designs is signing a JWT against creating a session."
            + ("" if spread is None else " " + spread.sentence)
        ),
        Table.of(
            (
                "design",
                "credential (bytes per request)",
                "login CPU (us)",
                "95 % interval",
                "login p50 (ms)",
                "logins failed",
            ),
            rows,
            id="credentials",
        ),
    ]


def _statuses(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} x {status}" for status, n in sorted(counts.items())) or "-"


def long_blocks(results: Results) -> list[Block]:
    """--long's experiments, when the file has them: one table each, the skipped with why."""
    found = results.get("long")
    if not found:
        return []
    out: list[Block] = [
        Heading(2, "The longer experiments (--long)"),
        Para(
            "Beside the curves, on the same stack, load generator and definitions; none of "
            "their windows is among the figures above."
        ),
    ]
    nginx = found.get("nginx")
    if nginx:
        out += [
            Heading(3, "The nginx reference"),
            Para(f"{nginx['note']}; {rate(nginx['offered_rps'])} req/s offered to each."),
            Table.of(
                ("proxy", "CPU per request (us)", "p50 / p99 (ms)", "requests", "failed"),
                (
                    (
                        name,
                        us(p["cpu_us_per_request"]),
                        f"{ms(p['p50_ms'])} / {ms(p['p99_ms'])}",
                        plain(p["requests"]),
                        plain(p["failures"]),
                    )
                    for name, p in nginx["proxies"].items()
                ),
                id="long-nginx",
            ),
        ]
    rotation = found.get("rotation")
    if rotation:
        out += [
            Heading(3, "Key rotation under load"),
            Para(
                f"Auth restarted with a new signing key ({rotation['old_kid'][:8]} -> "
                f"{rotation['new_kid'][:8]}) inside each 'old' window; the 'new' windows carry "
                f"the new key's tokens. JWKS requests since: {rotation['jwks_fetches']}."
            ),
            Table.of(
                ("design", "tokens", "requests", "failed", "p99 (ms)"),
                (
                    (
                        w["design"],
                        w["token"],
                        plain(w["requests"]),
                        plain(w["failures"]),
                        ms(w["p99_ms"]),
                    )
                    for w in rotation["windows"]
                ),
                id="long-rotation",
            ),
        ]
    failover = found.get("failover")
    if failover:
        out += [
            Heading(3, "The session store as a Redis Cluster: a primary's failure"),
            Para(
                f"{failover['primaries']} primaries and {failover['replicas']} replicas; "
                f"{failover['design']} at {rate(failover['offered_rps'])} req/s; commands per "
                f"primary: {plain(failover['share'])}."
            ),
            Table.of(
                ("", "value"),
                (
                    ("recovered after (s)", plain(failover["recovered_s"])),
                    (
                        "requests failed in the window",
                        f"{failover['failures']} of {failover['requests']}",
                    ),
                    (
                        "a session on the failed primary answered",
                        _statuses(failover["session_statuses"]),
                    ),
                    ("a JWT meanwhile answered", _statuses(failover["jwt_statuses"])),
                    (
                        "sessions back after",
                        f"{failover['sessions_back']} of {failover['sessions_on_victim']}",
                    ),
                ),
                id="long-failover",
            ),
        ]
    traced = found.get("traced")
    if traced:
        out += [
            Heading(3, "Where each hop's time goes (traces)"),
            Table.of(
                (
                    "design",
                    "hop",
                    "requests",
                    "verify p50 (us)",
                    "store p50 (us)",
                    "store calls per request",
                    "/metrics check (us)",
                ),
                (
                    (
                        t["design"],
                        hop,
                        plain(h["requests"]),
                        us(h["verify_p50_us"]),
                        plain(h["store_p50_us"]),
                        plain(h["store_calls_per_request"]),
                        us(h["metrics_check_mean_us"]),
                    )
                    for t in traced
                    for hop, h in t["hops"].items()
                ),
                id="long-traced",
            ),
        ]
    if found.get("skipped"):
        out += [
            Heading(3, "Not measured"),
            Bullets(tuple(f"{name}: {why}" for name, why in found["skipped"].items())),
        ]
    return out


def blocks(results: Results, drawn: Collection[str]) -> list[Block]:
    """The whole report, in reading order; `drawn`: the chart keys that have a PNG."""
    comparisons = results.get("comparisons") or []
    return [
        Heading(1, TITLE),
        banner(results),
        Para(run_line(results)),
        Heading(2, "Which design when"),
        Bullets(tuple(results.get("advice") or ["No advice in this results file."])),
        Heading(2, "Headline figures"),
        headline(results),
        Para(HEADLINE_NOTE),
        Heading(2, "Comparisons"),
        Bullets(tuple(c["sentence"] for c in comparisons) or ("No comparisons in this file.",)),
        *write_blocks(results),
        *credential_blocks(results),
        *chart_blocks(drawn),
        *model_blocks(results),
        *long_blocks(results),
        *method_blocks(results),
    ]


# -- Markdown -------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> str:
    header, *rows = table.rows
    lines = ["| " + " | ".join(_md_cell(c) for c in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(content: Sequence[Block], images: Mapping[str, Path]) -> str:
    """Markdown; an image links its PNG beside the file."""
    out: list[str] = []
    for block in content:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Para):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            out.append(markdown_table(block))
        elif isinstance(block, Image):
            out.append(f"![{CHARTS[block.key][1]}]({images[block.key].name})")
        elif not block.checked:
            out.append("> No self-checks in this results file.")
        else:
            if block.failed:
                lines = [f"> **{len(block.failed)} self-check(s) failed**"]
                lines += [f"> - **{name}**: {detail}" for name, detail in block.failed]
            elif not block.passed:
                lines = ["> No self-check could be judged."]
            else:
                which = "judged " if block.unjudged else ""
                passed = ", ".join(block.passed)
                lines = [f"> All {len(block.passed)} {which}self-checks passed: {passed}."]
            if block.unjudged:
                lines += [">", f"> {len(block.unjudged)} not judged ({NOT_JUDGED}):"]
                lines += [f"> - **{name}**: {detail}" for name, detail in block.unjudged]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


# -- HTML -----------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 76rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.88rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; display: block; margin: 1rem 0; }
code { background: #f6f6f6; }
.banner { padding: 0.6rem 1rem; border-radius: 4px; margin: 1rem 0; }
.banner.failed { background: #c62828; color: #fff; }
.banner.passed { background: #e8f5e9; color: #1b5e20; }
.banner.none { background: #fff8e1; color: #6d4c00; }
.banner ul { margin: 0.3rem 0 0 0; }
"""


def _inline(text: str) -> str:
    """Escape, then render `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _checks_html(checks: Sequence[tuple[str, str]]) -> str:
    return "".join(
        f'<li><strong class="check">{html.escape(name)}</strong>: {_inline(detail)}</li>'
        for name, detail in checks
    )


def _banner_html(block: Banner) -> str:
    if not block.checked:
        return (
            '<div class="banner none" id="self-checks">No self-checks in this results file.</div>'
        )
    unjudged = (
        f'<div class="banner none" id="unjudged-checks"><strong>{len(block.unjudged)} not '
        f"judged ({NOT_JUDGED})</strong><ul>{_checks_html(block.unjudged)}</ul>"
        "</div>"
        if block.unjudged
        else ""
    )
    if not block.failed and not block.passed:
        return (
            '<div class="banner none" id="self-checks">No self-check could be judged.</div>'
            + unjudged
        )
    if not block.failed:
        names = html.escape(", ".join(block.passed))
        return (
            f'<div class="banner passed" id="self-checks">All {len(block.passed)} '
            f"{'judged ' if block.unjudged else ''}self-checks passed: {names}.</div>" + unjudged
        )
    return (
        f'<div class="banner failed" id="self-checks" role="alert"><strong>'
        f"{len(block.failed)} self-check(s) failed</strong><ul>{_checks_html(block.failed)}</ul>"
        "</div>" + unjudged
    )


def to_html(content: Sequence[Block], images: Mapping[str, Path]) -> str:
    """One HTML page, readable offline: the PNGs embedded as data URLs, nothing fetched."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(TITLE)}</title><style>{STYLE}</style></head><body>",
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
            ident = f' id="{html.escape(block.id)}"' if block.id else ""
            out.append(f"<table{ident}><thead><tr>")
            out.append("".join(f"<th>{html.escape(c)}</th>" for c in header))
            out.append("</tr></thead><tbody>")
            for row in rows:
                out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
            out.append("</tbody></table>")
        elif isinstance(block, Image):
            data = base64.b64encode(images[block.key].read_bytes()).decode()
            alt = html.escape(CHARTS[block.key][1])
            out.append(f'<img alt="{alt}" src="data:image/png;base64,{data}">')
        else:
            out.append(_banner_html(block))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# -- files ----------------------------------------------------------------------------------------


def write(results: Results, out_dir: Path) -> None:
    """report.html, report.md and the charts' PNGs in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images = draw(results, out_dir)
    content = blocks(results, images)
    (out_dir / "report.md").write_text(to_markdown(content, images))
    (out_dir / "report.html").write_text(to_html(content, images))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or len(args) > 2 or args[0].startswith("-"):
        print("usage: python -m loadtests.measure.report RESULTS.json [OUT_DIR]", file=sys.stderr)
        return 2
    source = Path(args[0])
    out_dir = Path(args[1]) if len(args) > 1 else source.parent
    write(load(source), out_dir)
    print(f"wrote {out_dir / 'report.html'} and {out_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
