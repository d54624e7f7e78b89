"""`python -m devstack` (what `make up` runs): the whole stack on loopback until Ctrl-C."""

import sys

from devstack.launcher import main

sys.exit(main())
