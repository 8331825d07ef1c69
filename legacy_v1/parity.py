"""The parity command's legacy entry point: ``python -m legacy_v1.parity`` runs the ``parity`` package's
command line (the harness lives outside this package, which holds the legacy code alone; ``parity.cli``
turns oneDNN off before TensorFlow is imported)."""

import sys

from parity.cli import main

if __name__ == "__main__":
    sys.exit(main())
