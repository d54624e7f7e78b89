"""Everything a run's report directory holds: results.json, the CSVs, the plots and the Markdown."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from loadtests.bench.results import BenchResults, dump
from loadtests.report.plots import plot
from loadtests.report.sections import render
from loadtests.report.summary import capacity, summarise
from loadtests.report.tables import seed_cells, seed_table


def _flatten(row: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    """Nested figures as dotted columns (cpu_us_per_request.gateway); by_name is left out."""
    out: dict[str, object] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if key == "by_name":
                continue
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def write_csv(
    path: Path, rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None
) -> None:
    """One row per mapping, nested figures flattened; columns sorted unless given."""
    if not rows:
        path.write_text("")
        return
    flat = [_flatten(r) for r in rows]
    names = list(columns) if columns is not None else sorted({k for r in flat for k in r})
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(flat)


def write(results: BenchResults, out: Path) -> Path:
    """Write the report of `results` into `out`; the path of its report.md."""
    out.mkdir(parents=True, exist_ok=True)
    dump(results, out / "results.json")
    summary = summarise(results["phases"])
    write_csv(out / "phases.csv", results["phases"])
    write_csv(out / "distance.csv", results.get("distance") or [])
    write_csv(out / "revocation.csv", results.get("revocation") or [])
    write_csv(out / "microbench.csv", results.get("microbench") or [])
    write_csv(out / "capacity.csv", capacity(summary))
    header, rows = seed_cells(results, summary)
    write_csv(out / "designs.csv", [dict(zip(header, row, strict=True)) for row in rows], header)
    outage = results.get("outage")
    states = (("stalled", outage["stalled"]), ("down", outage["down"])) if outage else ()
    write_csv(
        out / "outage.csv",
        [
            {"store": state, "request": request, **probe}
            for state, probes in states
            for request, probe in probes.items()
        ],
    )
    plots = plot(results, summary, out) if summary else []
    (out / "report.md").write_text(render(results, summary, plots))
    (out / "summary.md").write_text(seed_table(results, summary) + "\n")
    return out / "report.md"
