"""Generate the embedded demo data set into data/ (see data/README.md and --help).

A thin wrapper around :func:`utils.datagen.demo_data.main`; equivalent to
``python -m utils.datagen.demo_data``.
"""

import sys

from utils.datagen.demo_data import main

if __name__ == "__main__":
    sys.exit(main())
