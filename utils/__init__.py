"""DIFFER's shared code: one folder (a *room*) per role, data flowing one way.

**The core** (where to start reading), at the top of the package:

* ``model.py``: the one graph builder training and evaluation share (``build_graph``: network,
  camera, both projections, the 2D and 3D losses, validation Chamfer), from ``GraphSettings``;
* ``task.py``: the ``Task`` interface, the one extension point (``rgb/task.py`` and
  ``partseg/task.py`` implement it), and the registry that finds a task by name;
* ``losses.py``: the 2D losses on projections (silhouette BCE, CAPNet affinities, colour L2, part
  cross-entropy) and the 3D terms;
* ``metrics.py``: unit-cube scaling, Chamfer and EMD (through ``tf_ops``), feature errors through
  nearest neighbours, the side groups, the medoid;
* ``render/``: the paper's renderer, usable alone (eager or graph): the camera and the mask and
  depth-aware feature projections; ``fit.py`` fits a free cloud to views with it.

**The rooms around it**, ranked low to high; a room imports only rooms of its rank or below
(``tests/test_layout.py`` checks every import of the repository):

====  ==========================================================================================
rank  rooms
====  ==========================================================================================
0     ``common/``: helpers with nothing of the method in them (quiet TensorFlow import and
      graph-mode switch ``tfv1``, ``atomic_io``, ``cli`` (one error path, argument types),
      ``lock``, ``progress``, ``visualize``)
1     ``render/``, ``data/`` (layout, readers, batch pipeline, view cache), ``net/`` (layers, the
      reconstruction network)
2     ``losses.py``, ``metrics.py``, ``fit.py``
3     ``task.py``, ``model.py``, ``experiment.py`` (the experiment folder: args.json, snapshots,
      lock), and every task's ``task.py``
4     ``train/``: flags and presets (``config``), the training loop
5     ``eval/``: the metrics run, inference and export, the statistics over seeds and the
      breakdown behind docs/results.md
====  ==========================================================================================

Beside the ranks: ``datagen/`` makes data sets (procedural demo shapes or a folder of meshes,
one render -> sample -> write path) and uses only ``common``, ``data`` and ``render``;
``tf_ops`` (the compiled ops, a package of its own) uses nothing of ``utils``. The entry points
and scripts (``rgb/``, ``partseg/``, ``data/``, ``examples/``, ``benchmarks/`` for speed,
``claims/`` for the paper's experiments) call into the rooms and never into each other: what
two of them share lives in a room.
"""
