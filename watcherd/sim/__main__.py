"""`python -m watcherd.sim`: the simulator's command line."""

import sys

from watcherd.sim.cli import main

sys.exit(main())
