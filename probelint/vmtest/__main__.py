"""``python -m probelint.vmtest``: run probe specs from a file in a real kernel."""

import sys

from .cli import main

sys.exit(main())
