"""The house's rule: no room imports a room drawn above it, in every Python folder of the
repository (imports parsed with ``ast``, at module level and inside functions).

Ranks inside ``utils``, low to high (a module may import its own room, any lower rank, and
``tf_ops``): the low helpers (``utils.common``) < the renderer, data reading and the network <
losses, metrics and the renderer's fit < the task interface, the graph builder, the experiment
folder, and every task's ``task.py`` < training < evaluation. The data-making tools
(``utils.datagen``) may use only the low helpers, data reading and the renderer; ``tf_ops`` uses
nothing from ``utils``. Nothing in ``utils`` imports a task or a script.

Around them: a task's ``task.py`` is ranked with the task interface, so it may not import training
or evaluation, nor another task. The entry points (the other modules of a task folder) and the
scripts (``benchmarks/``, ``claims/``, ``examples/``, ``data/``) may import any room and the tasks,
but no other entry point or script: what two scripts share is library code.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RANKS = [
    {"utils.common"},
    {"utils.render", "utils.data", "utils.net"},
    {"utils.losses", "utils.metrics", "utils.fit"},
    {"utils.task", "utils.model", "utils.experiment", "TASK"},
    {"utils.train"},
    {"utils.eval"},
]
# Rooms outside the ranks, with the rooms each may import (besides itself and tf_ops).
SIDE_ROOMS = {"utils.datagen": RANKS[0] | {"utils.data", "utils.render"}, "tf_ops": set()}
SCRIPT_FOLDERS = ("benchmarks", "claims", "examples", "data")
# tf_ops' build and GPU check run on machines without the package installed (a GPU box with only
# nvcc): they find their sibling files by path, and their tests start them that way.
STANDALONE = {
    os.path.join("tf_ops", "build.py"),
    os.path.join("tf_ops", "check_gpu.py"),
    os.path.join("tests", "test_tf_ops.py"),
}
NOT_CHECKED = {"tests", ".venv", ".git", "build", "experiments", "outputs", ".ci", "scripts", "docs"}


def _task_folders(root):
    """Top-level folders holding a task.py (but utils/, whose task.py is the interface)."""
    return {d for d in os.listdir(root) if d != "utils" and os.path.isfile(os.path.join(root, d, "task.py"))}


def _room(module, tasks):
    """The room of a dotted module name: a utils room (longest matching name), 'tf_ops', 'TASK:<name>'
    (a task's task.py), 'ENTRY:<folder>' (a task's entry point or a script), or None (outside)."""
    head = module.split(".")[0]
    if module == "utils":
        return "utils.common"  # the package's map (its __init__): imports nothing
    if head in tasks:
        task_level = module in (head, f"{head}.task") or module.startswith(f"{head}.task.")
        return f"TASK:{head}" if task_level else f"ENTRY:{head}"
    if head in SCRIPT_FOLDERS:
        return f"ENTRY:{head}"
    rooms = set().union(*RANKS) | set(SIDE_ROOMS)
    best = None
    for room in rooms:
        if (module == room or module.startswith(room + ".")) and (best is None or len(room) > len(best)):
            best = room
    return best


def _rank(room):
    room = "TASK" if room.startswith("TASK:") else room
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
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if base else alias.name


def allowed(importer_room, imported_room, importer=None, imported=None):
    """May a module of ``importer_room`` import one of ``imported_room``?"""
    if imported_room is None:
        return True
    if imported_room.startswith("ENTRY:"):  # no script or entry point is imported by anything
        return False
    if importer_room.startswith("ENTRY:"):
        return True  # any room, any task
    if imported_room == importer_room:
        return True
    if importer_room in SIDE_ROOMS:
        return imported_room in SIDE_ROOMS[importer_room] or imported_room == "tf_ops" and importer_room != "tf_ops"
    if imported_room == "tf_ops":
        return True
    if imported_room in SIDE_ROOMS or imported_room.startswith("TASK:"):
        return False  # nothing shared depends on the data-making tools or on a task
    return _rank(imported_room) <= _rank(importer_room)


def python_folders(root):
    """The top-level folders holding Python files, but the tests and generated ones."""
    out = set()
    for name in os.listdir(root):
        folder = os.path.join(root, name)
        if os.path.isdir(folder) and name not in NOT_CHECKED and not name.startswith("."):
            if any(f.endswith(".py") for _, _, files in os.walk(folder) for f in files):
                out.add(name)
    return out


def violations(root, folders=None):
    """['<file>:<line>: <room> imports <module> (<room>)'] for every import against the rules."""
    out = []
    tasks = _task_folders(root) | _task_folders(ROOT)
    for folder in sorted(python_folders(root) if folders is None else folders):
        for dirpath, dirs, files in os.walk(os.path.join(root, folder)):
            dirs[:] = [d for d in dirs if d not in NOT_CHECKED]
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                importer = _room(_module_name(root, path), tasks)
                if importer is None:
                    out.append(f"{os.path.relpath(path, root)}: in no room of tests/test_layout.py")
                    continue
                for line, target in _imports(root, path):
                    room = _room(target, tasks)
                    if not allowed(importer, room):
                        out.append(f"{os.path.relpath(path, root)}:{line}: {importer} imports {target} ({room})")
    return out


def test_every_python_folder_is_checked():
    assert python_folders(ROOT) == {"utils", "tf_ops", "rgb", "partseg", "benchmarks", "claims", "examples", "data"}


def test_every_utils_module_has_a_room():
    homeless = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "utils")):
        for name in files:
            module = _module_name(ROOT, os.path.join(dirpath, name))
            if name.endswith(".py") and module != "utils" and _room(module, set()) is None:
                homeless.append(module)
    assert not homeless, f"modules in no room of tests/test_layout.py's ranks: {homeless}"


def test_no_room_imports_a_room_above_it():
    found = violations(ROOT)
    assert not found, "imports against the house's ranks:\n" + "\n".join(found)


def test_no_file_loads_another_by_path():
    """Modules are imported by name: no importlib file loaders, runpy paths or sys.path edits outside
    tf_ops' build and GPU check (which must work without the package installed)."""
    bad = []
    for folder in python_folders(ROOT) | {"tests"}:
        for dirpath, dirs, files in os.walk(os.path.join(ROOT, folder)):
            dirs[:] = [d for d in dirs if d not in NOT_CHECKED - {"tests"}]
            for name in files:
                path = os.path.join(dirpath, name)
                if not name.endswith(".py") or path == os.path.abspath(__file__):
                    continue
                text = open(path).read()
                for needle in (
                    "spec_from_file_location",
                    "run_path(",
                    "sys.path.insert",
                    "sys.path.append",
                    "SourceFileLoader",
                ):
                    if needle in text and os.path.relpath(path, ROOT) not in STANDALONE:
                        bad.append(f"{os.path.relpath(path, ROOT)}: {needle}")
    assert not bad, bad


@pytest.mark.parametrize(
    "room, line, bad",
    [
        ("utils/render/camera_x.py", "from utils.train import config", True),  # renderer -> training
        ("utils/data/x.py", "def f():\n    from utils.model import build_graph", True),  # inside a function
        ("utils/metrics.py", "from utils.eval import evaluate", True),
        ("utils/datagen/x.py", "from utils import metrics", True),  # data makers: low rooms only
        ("utils/datagen/x.py", "from utils.render import camera", False),
        ("utils/model.py", "from utils.datagen import demo_data", True),  # no one uses the makers
        ("tf_ops/x.py", "from utils.common import tfv1", True),
        ("utils/eval/x.py", "from utils.train import config\nfrom . import evaluate\nimport tf_ops", False),
        ("utils/data/x.py", "from ..render import camera\nfrom .. import losses", True),  # relative, upward
        ("rgb/task.py", "from utils.train.config import positive_int", True),  # a task below training
        ("rgb/task.py", "from utils.task import Task\nfrom utils import losses", False),
        ("rgb/task.py", "from partseg.task import TASK", True),  # a task uses no other task
        ("rgb/train_rgb.py", "from utils.train import loop\nfrom rgb.task import TASK", False),  # an entry point
        ("utils/eval/x.py", "from rgb.task import TASK", True),  # shared code names no task
        ("claims/x.py", "from benchmarks import bench_data", True),  # no script imports a script
        ("claims/x.py", "from claims import ablation", True),
        ("examples/x.py", "from utils.fit import main", False),
        ("utils/new_room.py", "import numpy", True),  # a module outside every room
    ],
)
def test_the_check_finds_a_bad_import(tmp_path, room, line, bad):
    """The checker on a copy-sized fake tree: one module with ``line`` is (or is not) reported."""
    path = tmp_path / room
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(line + "\n")
    if room.startswith("rgb/"):
        (tmp_path / "rgb" / "task.py").touch()
    assert bool(violations(str(tmp_path))) == bad, violations(str(tmp_path))
