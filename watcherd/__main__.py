"""`python -m watcherd` runs the CLI."""

import sys

from watcherd.cli import main

sys.exit(main())
