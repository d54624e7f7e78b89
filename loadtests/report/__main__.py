import sys
from pathlib import Path

from loadtests.bench.results import load
from loadtests.report import write

write(load(Path(sys.argv[1])), Path(sys.argv[2]))
