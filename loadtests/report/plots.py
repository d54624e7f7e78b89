"""The report's PNG plots (matplotlib, headless): one function per figure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from loadtests.bench.results import BenchResults, DistancePhase
from loadtests.modes import MODES
from loadtests.report.summary import SERVICES, STORES, ModeSummary, mode_order

PLOTS = (
    "throughput_latency.png",
    "cpu_per_request.png",
    "store_ops_per_request.png",
    "latency_vs_distance.png",
)

PERCENTILES: tuple[Literal["p50_ms", "p95_ms", "p99_ms"], ...] = ("p50_ms", "p95_ms", "p99_ms")

Summary = Mapping[str, ModeSummary]


def _save(fig: Figure, out: Path, name: str) -> str:
    for ax in fig.axes:  # six design names side by side need the room
        ax.tick_params(axis="x", labelrotation=25, labelsize=8)
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def throughput_latency(summary: Summary, modes: list[str], out: Path) -> str:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.bar(modes, [summary[m]["rps"] for m in modes], color="#4c72b0")
    left.set_title("Throughput at the fixed offered load")
    left.set_ylabel("requests/s")
    width = 0.25
    for i, key in enumerate(PERCENTILES):
        right.bar(
            [x + (i - 1) * width for x in range(len(modes))],
            [summary[m][key] for m in modes],
            width,
            label=key.replace("_ms", ""),
        )
    right.set_xticks(range(len(modes)), modes)
    right.set_title("Latency percentiles through the gateway")
    right.set_ylabel("ms")
    right.legend()
    return _save(fig, out, PLOTS[0])


def cpu_per_request(summary: Summary, modes: list[str], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bottom = [0.0] * len(modes)
    for part in (*SERVICES, *STORES):
        raw = [
            summary[m]["cpu_us_per_request"].get(part)
            if part in SERVICES
            else summary[m]["store_cpu_us_per_request"].get(part, 0.0)
            for m in modes
        ]
        values = [0.0 if v is None or math.isnan(v) else v for v in raw]
        ax.bar(modes, values, bottom=bottom, label=part.replace("_", " "))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_title("CPU per request, by process (from /metrics and Redis INFO)")
    ax.set_ylabel("CPU microseconds per request")
    ax.legend()
    return _save(fig, out, PLOTS[1])


def store_ops_per_request(summary: Summary, modes: list[str], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, store in enumerate(STORES):
        ax.bar(
            [x + (i - 0.5) * 0.35 for x in range(len(modes))],
            [summary[m]["store_ops_per_request"].get(store, 0.0) for m in modes],
            0.35,
            label=store.replace("_", " "),
        )
    ax.set_xticks(range(len(modes)), modes)
    ax.set_title("Store operations per request (Redis INFO commandstats)")
    ax.set_ylabel("operations per request")
    ax.legend()
    return _save(fig, out, PLOTS[2])


def latency_vs_distance(distance: list[DistancePhase], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for mode in sorted({d["mode"] for d in distance}, key=mode_order):
        runs = sorted((d for d in distance if d["mode"] == mode), key=lambda d: d["added_rtt_ms"])
        xs = [d["added_rtt_ms"] for d in runs]
        ax.plot(xs, [d["p50_ms"] for d in runs], marker="o", label=f"{mode} p50")
        ax.plot(
            # p95, not p99: over a short window p99 is mostly the data store's fsync on POSTs.
            xs,
            [d["p95_ms"] for d in runs],
            marker="x",
            linestyle="--",
            label=f"{mode} p95",
        )
    ax.set_title("Latency vs distance to the session store")
    ax.set_xlabel("added round trip to the session store (ms)")
    ax.set_ylabel("request latency (ms)")
    ax.legend()
    return _save(fig, out, PLOTS[3])


def plot(results: BenchResults, summary: Summary, out: Path) -> list[str]:
    """Draw every plot the results have data for into `out`; their file names."""
    modes = [m.name for m in MODES if m.name in summary]
    made = [
        throughput_latency(summary, modes, out),
        cpu_per_request(summary, modes, out),
        store_ops_per_request(summary, modes, out),
    ]
    distance = results.get("distance") or []
    if distance:
        made.append(latency_vs_distance(distance, out))
    return made
