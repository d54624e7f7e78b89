import sys

from loadtests.crossover.cli import main

sys.exit(main())
