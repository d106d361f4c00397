"""``python -m assimilax``: the command line (see `assimilax.cli`)."""

import sys

from .cli import main


sys.exit(main())
