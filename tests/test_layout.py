"""The house's rule: no room imports a room drawn above it (imports parsed with ``ast``, at
module level and inside functions).

Ranks, low to high (a module may import its own room, any lower rank, and ``tf_ops``):
the low helpers (atomic_io, progress, tfv1, visualize) < the renderer, data reading and the
network < losses and metrics < the task interface and the graph builder < training <
evaluation. The data-making tools (utils.datagen) may use only the low helpers, data reading and
the renderer; ``tf_ops`` uses nothing from ``utils``.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RANKS = [
    {"utils.atomic_io", "utils.cli", "utils.lock", "utils.progress", "utils.tfv1", "utils.visualize"},
    {"utils.render", "utils.data", "utils.net"},
    {"utils.losses", "utils.metrics"},
    {"utils.task", "utils.model"},
    {"utils.train"},
    {"utils.eval"},
]
# Rooms outside the ranks, with the rooms each may import (besides itself and tf_ops).
SIDE_ROOMS = {"utils.datagen": RANKS[0] | {"utils.data", "utils.render"},
              "tf_ops": set()}


def _room(module):
    """The room of a dotted module name (longest matching room name), or None (outside the rooms)."""
    rooms = set().union(*RANKS) | set(SIDE_ROOMS)
    best = None
    for room in rooms:
        if (module == room or module.startswith(room + ".")) and (best is None or len(room) > len(best)):
            best = room
    return best


def _rank(room):
    return next(i for i, rooms in enumerate(RANKS) if room in rooms)


def _module_name(root, path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def _imports(root, path):
    """Dotted names of everything ``path`` imports (every ``import``/``from`` in the file), with
    ``from pkg import name`` giving ``pkg.name`` (name may be a module) and relative imports resolved."""
    module = _module_name(root, path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if base else alias.name


def allowed(importer_room, imported_room):
    """May a module of ``importer_room`` import one of ``imported_room``?"""
    if imported_room is None or imported_room == importer_room:
        return True
    if importer_room in SIDE_ROOMS:
        return imported_room in SIDE_ROOMS[importer_room] or imported_room == "tf_ops" and importer_room != "tf_ops"
    if imported_room == "tf_ops":
        return True
    if imported_room in SIDE_ROOMS:
        return False  # nothing shared depends on the data-making tools
    return _rank(imported_room) <= _rank(importer_room)


def violations(root, folders=("utils", "tf_ops")):
    """['<file>:<line>: <room> imports <module> (<room>)'] for every import against the ranks."""
    out = []
    for folder in folders:
        for dirpath, _, files in os.walk(os.path.join(root, folder)):
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                importer = _room(_module_name(root, path))
                if importer is None:
                    continue
                for line, target in _imports(root, path):
                    room = _room(target)
                    if not allowed(importer, room):
                        out.append(f"{os.path.relpath(path, root)}:{line}: {importer} imports {target} ({room})")
    return out


def test_every_utils_module_has_a_room():
    homeless = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "utils")):
        for name in files:
            module = _module_name(ROOT, os.path.join(dirpath, name))
            if name.endswith(".py") and module != "utils" and _room(module) is None:
                homeless.append(module)
    assert not homeless, f"modules in no room of tests/test_layout.py's ranks: {homeless}"


def test_no_room_imports_a_room_above_it():
    found = violations(ROOT)
    assert not found, "imports against the house's ranks:\n" + "\n".join(found)


@pytest.mark.parametrize("room, line, bad", [
    ("utils/render/camera_x.py", "from utils.train import config", True),       # renderer -> training
    ("utils/data/x.py", "def f():\n    from utils.model import build_graph", True),  # inside a function
    ("utils/losses_x.py", "import utils.eval.inference", False),                # not a room: skipped
    ("utils/metrics.py", "from utils.eval import evaluate", True),
    ("utils/datagen/x.py", "from utils import metrics", True),                   # data makers: low rooms only
    ("utils/datagen/x.py", "from utils.render import camera", False),
    ("utils/model.py", "from utils.datagen import demo_data", True),             # no one uses the makers
    ("tf_ops/x.py", "from utils import tfv1", True),
    ("utils/eval/x.py", "from utils.train import config\nfrom . import evaluate\nimport tf_ops", False),
    ("utils/data/x.py", "from ..render import camera\nfrom .. import losses", True),  # relative, upward
])
def test_the_check_finds_a_bad_import(tmp_path, room, line, bad):
    """The checker on a copy-sized fake tree: one module with ``line`` is (or is not) reported."""
    path = tmp_path / room
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(line + "\n")
    assert bool(violations(str(tmp_path))) == bad, violations(str(tmp_path))
