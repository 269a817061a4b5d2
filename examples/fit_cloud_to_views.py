"""Fit a free point cloud and its colours to the views of one model with DIFFER's renderer alone
(TensorFlow 2 eager code, no network): the tutorial of docs/tutorial_fit.md.

    python examples/fit_cloud_to_views.py --help

A thin door to :func:`utils.fit.main`; the fit itself is :func:`utils.fit.fit`.
"""

import sys

from utils.fit import main

if __name__ == "__main__":
    import utils.common.tfv1  # noqa: F401  (TensorFlow loads without its start-up lines; eager mode stays on)

    sys.exit(main())
