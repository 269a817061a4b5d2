"""Making data sets: procedural demo shapes, mesh loading, the ray-casting renderer and the writers
of the original layout (used by ``data/make_demo_data.py`` and ``data/make_dataset.py``)."""
