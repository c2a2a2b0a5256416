"""``python -m dpov2``: the ``dpov2`` command, for environments without its script on PATH."""

import sys

from dpov2.cli import main

if __name__ == "__main__":
    sys.exit(main())
