"""The README's figures: the headline table and the capacity chart of the committed reference
run (reports/reference/), generated between two markers so they cannot drift from the file.

`python -m loadtests.measure.readme` rewrites the block from reports/reference/results.json;
`--check` exits 1 (and says so) when the README's block differs from what the file gives.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from loadtests.measure.charts import CHARTS
from loadtests.measure.report import NOT_JUDGED, banner, headline, markdown_table, run_line
from loadtests.measure.schema import Results, load

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
REFERENCE = Path("reports/reference")  # relative to the repository: the README links into it
BEGIN = "<!-- reference:begin -->"
END = "<!-- reference:end -->"


def block(results: Results, reference: Path = REFERENCE) -> str:
    """The README's reference block, markers included."""
    chart, caption = CHARTS["capacity"]
    return "\n".join(
        [
            BEGIN,
            f"{run_line(results)} Medians of the repeats with 95 % intervals; "
            "`-`: no such figure for that design.",
            "",
            markdown_table(headline(results)),
            "",
            checks_line(results),
            "",
            f"![{caption}]({(reference / chart).as_posix()})",
            "",
            f"The whole report: [{(reference / 'report.html').as_posix()}]"
            f"({(reference / 'report.html').as_posix()}) "
            f"([Markdown]({(reference / 'report.md').as_posix()})).",
            END,
        ]
    )


def checks_line(results: Results) -> str:
    """The self-checks as the report's banner states them: which failed, by name."""
    block = banner(results)
    total = len(block.failed) + len(block.passed) + len(block.unjudged)
    if not total:
        return "No self-checks in this results file."
    unjudged = [name for name, _ in block.unjudged]
    aside = f" Not judged ({NOT_JUDGED}): {', '.join(unjudged)}." if unjudged else ""
    if not block.failed and not block.passed:
        return f"Self-checks: none judged.{aside}"
    if not block.failed:
        judged_pass = f"all {len(block.passed)} judged" if unjudged else f"all {total}"
        return f"Self-checks: {judged_pass} pass.{aside}"
    return (
        f"Self-checks: {len(block.passed)} of {total} pass; **failed: "
        f"{', '.join(name for name, _ in block.failed)}** (the report's banner says why).{aside}"
    )


def rewrite(readme: str, new_block: str) -> str:
    """`readme` with the text between the markers (markers included) replaced by `new_block`."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"the README has no {BEGIN} ... {END} block")
    return readme[:start] + new_block + readme[end + len(END) :]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.measure.readme",
        description="Rewrite the README's reference block from the reference run's results.json.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the README differs")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results", type=Path, default=ROOT / REFERENCE / "results.json")
    args = parser.parse_args(argv)
    current = args.readme.read_text()
    wanted = rewrite(current, block(load(args.results)))
    if args.check:
        if wanted != current:
            print(
                f"{args.readme}: the reference block differs from {args.results}; "
                "run python -m loadtests.measure.readme",
                file=sys.stderr,
            )
            return 1
        return 0
    if wanted != current:
        args.readme.write_text(wanted)
        print(f"rewrote the reference block of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
