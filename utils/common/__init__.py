"""The low helpers every room of ``utils`` may use, and nothing of DIFFER's method: the quiet
TensorFlow import and graph-mode switch (``tfv1``), files replaced in one step (``atomic_io``),
the tools' one error path and argument types (``cli``), folder locks (``lock``), progress bars and
lines (``progress``), pictures of clouds (``visualize``)."""
