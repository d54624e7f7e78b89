"""Turn one bench run's results into report.md, summary.md, CSVs and PNG plots.

Pure function of the results that loadtests.bench produces (saved as results.json, typed in
loadtests.bench.results), so a report can be rebuilt, and tested, from recorded data:
`python -m loadtests.report reports/latest/results.json OUTDIR`.

summary.py computes the figures, tables.py formats them (and the blog table), sections.py
writes report.md around them, plots.py draws, files.py writes the directory.
"""

from loadtests.report.files import write
from loadtests.report.plots import PLOTS

__all__ = ["PLOTS", "write"]
