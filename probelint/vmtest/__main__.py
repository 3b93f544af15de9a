"""``python -m probelint.vmtest``: run probe specs from a file in a real kernel."""

import sys

from probelint.cli import main

sys.exit(main(["vmtest", *sys.argv[1:]]))  # the command's error handling: every error one line
