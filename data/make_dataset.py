"""Render a collection of real meshes (a folder of OBJ/glTF/PLY/OFF/STL files, or ShapeNetCore)
into the data layout (see data/README.md and --help).

A thin wrapper around :func:`utils.datagen.mesh_dataset.main`; equivalent to
``python -m utils.datagen.mesh_dataset``.
"""

import sys

from utils.datagen.mesh_dataset import main

if __name__ == "__main__":
    sys.exit(main())
