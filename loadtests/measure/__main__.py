import sys

from loadtests.measure.cli import main

sys.exit(main())
