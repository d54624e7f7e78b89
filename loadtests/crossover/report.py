"""The crossover report: report.md and report.html (plots embedded, readable offline) from one
results.json, with the crossover charts and a "which design when" section computed from the
numbers (through loadtests/model.py), never written by hand.

Both files come from one list of blocks (crossover/document.py), so they say the same thing;
the sections are built in crossover/sections.py and crossover/experiment_sections.py, the
charts drawn in crossover/plots.py. `python -m loadtests.crossover.report RESULTS [OUT]`
re-renders a recorded run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from loadtests import model
from loadtests.crossover.advice import which_design_when
from loadtests.crossover.document import Block, Bullets, Heading, Para, num, to_html, to_markdown
from loadtests.crossover.experiment_sections import (
    reference_blocks,
    revocation_blocks,
    rotation_blocks,
)
from loadtests.crossover.plots import CAPTIONS, plots
from loadtests.crossover.results import CrossoverResults, load
from loadtests.crossover.sections import distance_blocks, hop_blocks, knee_blocks, model_blocks


def blocks(results: CrossoverResults) -> list[Block]:
    """The whole report: the run, which design when, the seven sections, the notes."""
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
        *knee_blocks(results),
        *hop_blocks(results),
        *distance_blocks(results),
        *revocation_blocks(results),
        *rotation_blocks(results),
        *model_blocks(results),
        *reference_blocks(results),
        *tail,
    ]


def write(results: CrossoverResults, out: Path) -> None:
    """report.md, report.html, the PNGs and model.txt (the model's default query) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    images = plots(results, out)
    content = blocks(results)
    (out / "report.md").write_text(to_markdown(content, images, CAPTIONS))
    (out / "report.html").write_text(to_html(content, images, CAPTIONS, "authscale: the crossover"))
    query = model.report(
        results,
        model.DEFAULT_QUERY["rate"],
        model.DEFAULT_QUERY["hops"],
        model.DEFAULT_QUERY["rtt_ms"],
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
            f"knee {name}: {num(d['knee_rps'])} req/s ({d['limit']}), "
            f"{num(d['cpu_us_per_request'])} us CPU/req"
        )
    for m in model.build(results):
        lines.append(
            f"hops {m.name}: CPU {m.cpu['intercept']:,.0f} + {m.cpu['slope']:,.0f}/hop us "
            f"(max err {num(m.cpu['max_abs_error_pct'], 1)} %)"
        )
    lines.append(f"distance: {results['distance']['method']}")
    for name, lag in results["revocation"].items():
        worst = model.worst_lag_ms(lag)
        lines.append(
            f"revocation {name}: "
            + ("until exp" if lag["until_exp"] else f"worst hop p99 {num(worst)} ms")
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
