"""The crossover charts: matplotlib PNGs drawn from one results.json, each under a key the
report's Image blocks name (IMAGES: its file and its caption)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from loadtests import model
from loadtests.crossover.knee import decisive
from loadtests.crossover.results import CrossoverResults, HopPoint, RevocationLag

IMAGES = {
    "knee": ("knee_latency.png", "p50 and p99 latency against offered load, per design"),
    "capacity": ("capacity.png", "offered load held at the knee and CPU per request there"),
    "hops": ("cost_vs_hops.png", "CPU, store operations and latency against verifying hops"),
    "distance": ("latency_vs_store_rtt.png", "p50 latency against the session store's RTT"),
    "revocation": ("revocation_lag.png", "revocation lag per hop (p99)"),
}
CAPTIONS = {key: caption for key, (_, caption) in IMAGES.items()}


Colors = Mapping[str, object]
# matplotlib.pyplot, the results, a color per design -> the figure (None: nothing to draw)
Chart = Callable[[Any, CrossoverResults, Colors], Any]


def _p99(lag: RevocationLag, hop: str) -> float:
    found = lag["hops"].get(hop)
    return float(found["p99_ms"] or 0.0) if found else 0.0


def plots(results: CrossoverResults, out: Path) -> dict[str, Path]:
    """The crossover charts as PNGs in `out`; returns those drawn, by key."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [d["name"] for d in results["designs"]]
    colors = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
    charts: dict[str, Chart] = {
        "knee": _knee,
        "capacity": _capacity,
        "hops": _hops,
        "distance": _distance,
        "revocation": _revocation,
    }
    drawn: dict[str, Path] = {}
    for key, chart in charts.items():
        figure = chart(plt, results, colors)
        if figure is None:
            continue
        path = out / IMAGES[key][0]
        figure.tight_layout()
        figure.savefig(path, dpi=90)
        plt.close(figure)
        drawn[key] = path
    return drawn


def _knee(plt: Any, results: CrossoverResults, colors: Colors) -> Any:
    knee = results["knee"]["designs"]
    if not knee:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, d in knee.items():
        steps = decisive(d["steps"])
        xs = [s["offered_rps"] for s in steps]
        for values, style, label in (
            ([s["p99_ms"] or 0 for s in steps], "-o", "p99"),
            ([s["p50_ms"] or 0 for s in steps], ":", "p50"),
        ):
            ax.plot(xs, values, style, color=colors.get(name), label=f"{name} {label}")
        limited = [s for s in steps if s["generator_limited"]]
        if limited:
            ax.plot([s["offered_rps"] for s in limited], [s["p99_ms"] or 0 for s in limited], "kx")
    ax.axhline(results["knee"]["slo_ms"], color="red", linewidth=1, label="SLO")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (req/s)")
    ax.set_ylabel("latency (ms, log)")
    ax.set_title("Latency against offered load (x: the load generator was the limit)")
    ax.legend(fontsize=7, ncol=2)
    return fig


def _capacity(plt: Any, results: CrossoverResults, colors: Colors) -> Any:
    knee = results["knee"]["designs"]
    if not knee:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    shown = [d["name"] for d in results["designs"] if d["name"] in knee]
    for axis, values, label, title in (
        (
            left,
            [float(knee[n]["knee_rps"] or 0) for n in shown],
            "req/s held at p99 <= SLO",
            "Capacity at the knee",
        ),
        (
            right,
            [float(knee[n]["cpu_us_per_request"] or 0) for n in shown],
            "CPU us per request (at the knee)",
            "Cost at the knee",
        ),
    ):
        axis.bar(shown, values, color=[colors[n] for n in shown])
        axis.set_ylabel(label)
        axis.set_title(title)
        axis.tick_params(axis="x", rotation=30, labelsize=8)
    return fig


def _hops(plt: Any, results: CrossoverResults, colors: Colors) -> Any:
    models = model.build(results)
    if not models:
        return None
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
    return fig


def _distance(plt: Any, results: CrossoverResults, colors: Colors) -> Any:
    distant = results["distance"]["designs"]
    if not distant:
        return None
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
    return fig


def _revocation(plt: Any, results: CrossoverResults, colors: Colors) -> Any:
    lags = {n: lag for n, lag in results["revocation"].items() if lag["hops"]}
    if not lags:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.8))
    hop_names = sorted(
        {h for lag in lags.values() for h in lag["hops"]}, key=lambda h: (h != "gateway", h)
    )
    width = 0.8 / max(len(lags), 1)
    for i, (name, lag) in enumerate(lags.items()):
        ax.bar(
            [j + i * width for j in range(len(hop_names))],
            [_p99(lag, h) for h in hop_names],
            width,
            color=colors.get(name),
            label=name + (" (until exp)" if lag["until_exp"] else ""),
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(hop_names))], hop_names)
    ax.set_ylabel("p99 ms from logout to refusal")
    ax.set_title("Revocation lag per hop")
    ax.legend(fontsize=7)
    return fig
