"""The report's charts, one per question, drawn with matplotlib from results.json alone: each a
PNG under a key that the report's Image blocks name (CHARTS: its file and its caption).

Charts know no design by name: colours follow the order of results["designs"], and the
control (schema.CONTROL) is drawn in black wherever it has figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from loadtests.measure.model import counts
from loadtests.measure.schema import CONTROL, HOPS, Results

CHARTS: dict[str, tuple[str, str]] = {
    "capacity": (
        "capacity_per_core.png",
        "Capacity per system CPU: median of the repeats, bars the 95 % interval",
    ),
    "cpu_by_process": (
        "cpu_by_process.png",
        "CPU per request by process, at the rate common to every design",
    ),
    "latency": (
        "latency_vs_load.png",
        "p50 and p99 against offered load (every capacity window)",
    ),
    "hops": (
        "cost_vs_hops.png",
        "CPU per request and p50 against verifying hops, with the control",
    ),
    "distance": ("p50_vs_store_rtt.png", "p50 against the session store's round-trip time"),
    "revocation": ("revocation_lag_per_hop.png", "Revocation lag per hop (p99)"),
}

Colors = Mapping[str, object]
# matplotlib.pyplot, the results, a colour per design -> the figure (None: nothing to draw)
Chart = Callable[[Any, Results, Colors], Any]


def per_core(results: Results, rps: float) -> float:
    """A rate per CPU the system ran on: the one division the report makes (capacity per core)."""
    return rps / max(1, len(results["environment"]["system_cpus"]))


def draw(results: Results, out: Path) -> dict[str, Path]:
    """Every chart there are figures for, as PNGs in `out`; returns those drawn, by key."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors: dict[str, object] = {}
    for i, name in enumerate(n for n in results["designs"] if n != CONTROL):
        colors[name] = plt.get_cmap("tab10")(i % 10)
    colors[CONTROL] = "black"
    charts: dict[str, Chart] = {
        "capacity": _capacity,
        "cpu_by_process": _cpu_by_process,
        "latency": _latency,
        "hops": _hops,
        "distance": _distance,
        "revocation": _revocation,
    }
    drawn: dict[str, Path] = {}
    for key, chart in charts.items():
        figure = chart(plt, results, colors)
        if figure is None:
            continue
        path = out / CHARTS[key][0]
        figure.tight_layout()
        figure.savefig(path, dpi=90)
        plt.close(figure)
        drawn[key] = path
    return drawn


def _capacity(plt: Any, results: Results, colors: Colors) -> Any:
    shown = {n: d["capacity_rps"] for n, d in results["designs"].items() if d["capacity_rps"]}
    if not shown:
        return None
    names = list(shown)
    medians = [per_core(results, c["median"]) for c in shown.values()]
    below = [
        m - per_core(results, c["ci95"][0]) for m, c in zip(medians, shown.values(), strict=True)
    ]
    above = [
        per_core(results, c["ci95"][1]) - m for m, c in zip(medians, shown.values(), strict=True)
    ]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.bar(names, medians, color=[colors[n] for n in names], yerr=[below, above], capsize=4)
    cpus = len(results["environment"]["system_cpus"])
    ax.set_ylabel(f"req/s per system CPU ({cpus} CPU{'s' if cpus != 1 else ''})")
    ax.set_title("Capacity per core (p99 within the SLO, served within 2 % of offered)")
    ax.tick_params(axis="x", rotation=20, labelsize=8)
    return fig


def _cpu_by_process(plt: Any, results: Results, colors: Colors) -> Any:
    shown = {
        n: d["cpu_by_process_us"]
        for n, d in results["designs"].items()
        if d.get("cpu_by_process_us")
    }
    if not shown:
        return None
    processes: list[str] = []
    for split in shown.values():
        processes += [p for p in split if p not in processes]
    names = list(shown)
    fig, ax = plt.subplots(figsize=(8, 4))
    bottom = [0.0] * len(names)
    for i, process in enumerate(processes):
        values = [shown[n].get(process, 0.0) for n in names]
        ax.bar(names, values, bottom=bottom, label=process, color=plt.get_cmap("Set2")(i % 8))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("CPU us per request")
    ax.set_title("Where each request's CPU goes")
    ax.tick_params(axis="x", rotation=20, labelsize=8)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def _latency(plt: Any, results: Results, colors: Colors) -> Any:
    windows = [w for w in results["windows"] if w["phase"] == "capacity" and w["p99_ms"]]
    if not windows:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in results["designs"]:
        mine = [w for w in windows if w["design"] == name]
        # One line per repeat: each repeat's search visits its own rates near the knee.
        for repeat in sorted({w["repeat"] for w in mine}):
            used = sorted(
                (w for w in mine if w["repeat"] == repeat and counts(w)),
                key=lambda w: w["offered_rps"],
            )
            xs = [w["offered_rps"] for w in used]
            label = name if repeat == min(w["repeat"] for w in mine) else None
            ax.plot(
                xs,
                [w["p99_ms"] for w in used],
                "-o",
                ms=3,
                lw=0.8,
                color=colors.get(name),
                label=label,
            )
            ax.plot(xs, [w["p50_ms"] for w in used], ".", ms=3, color=colors.get(name))
        limited = [w for w in mine if w["generator_limited"]]
        if limited:
            ax.plot([w["offered_rps"] for w in limited], [w["p99_ms"] for w in limited], "kx")
    slo = results["method"].get("slo_p99_ms")
    if isinstance(slo, int | float):
        ax.axhline(slo, color="red", linewidth=1, label="SLO (p99)")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (req/s)")
    ax.set_ylabel("latency (ms, log): p99 lines, p50 dots")
    # Windows measured again (the machine ran slow: capacity.retried) are left out.
    ax.set_title("Latency against offered load (x: limited by the load generator, not used)")
    ax.legend(fontsize=7, ncol=2)
    return fig


def _hops(plt: Any, results: Results, colors: Colors) -> Any:
    shown = {n: d["hops"] for n, d in results["designs"].items() if d["hops"]}
    if not shown:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, hops in shown.items():
        ks = [k for k in HOPS if str(k) in hops]
        style = "--" if name == CONTROL else "-o"
        width = 2.0 if name == CONTROL else 1.2
        for axis, values in (
            (left, [hops[str(k)]["cpu_us_per_request"] for k in ks]),
            (right, [hops[str(k)]["p50_ms"] for k in ks]),
        ):
            axis.plot(ks, values, style, ms=3, lw=width, color=colors.get(name), label=name)
    left.set_ylabel("CPU us per request")
    right.set_ylabel("p50 (ms)")
    for axis in (left, right):
        axis.set_xlabel("verifying services in the chain (k)")
        axis.set_xticks(list(HOPS))
    left.set_title("Cost against hops (dashed: the control)")
    left.legend(fontsize=7)
    return fig


def _distance(plt: Any, results: Results, colors: Colors) -> Any:
    shown = {n: d["distance"] for n, d in results["designs"].items() if d.get("distance")}
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, points in shown.items():
        xs = [p.get("measured_rtt_ms", p["added_rtt_ms"]) for p in points]
        ax.plot(xs, [p["p50_ms"] for p in points], "-o", ms=3, color=colors.get(name), label=name)
    ax.set_xlabel("session store round trip (ms, measured)")
    ax.set_ylabel("p50 (ms)")
    ax.set_title("Latency against the session store's distance")
    ax.legend(fontsize=7)
    return fig


def _revocation(plt: Any, results: Results, colors: Colors) -> Any:
    shown = {}
    for name, d in results["designs"].items():
        lag = d["revocation_lag_ms"]
        if lag and lag.get("by_hop"):
            shown[name] = lag["by_hop"]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    # Hops in the order the run polled them (the gateway first, then the services behind it).
    hops = list(dict.fromkeys(h for by_hop in shown.values() for h in by_hop))
    for name, by_hop in shown.items():
        ax.plot(
            [hops.index(h) for h in by_hop],
            [by_hop[h]["p99"] for h in by_hop],
            "-o",
            ms=3,
            color=colors.get(name),
            label=name,
        )
    ax.set_xticks(range(len(hops)), hops)
    ax.set_xlabel("hop (verifying service)")
    ax.set_ylabel("revocation lag p99 (ms)")
    ax.set_title("From a logout to its refusal, at each hop")
    ax.legend(fontsize=7)
    return fig
