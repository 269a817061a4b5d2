"""The commands the docs show exist as written: every ``python <script>`` (or ``python -m <module>``)
of README.md, docs/*.md, data/README.md and tf_ops/README.md answers ``--help``, and every flag a
doc passes to it is one its ``--help`` lists; ``bash run_ablation.sh`` commands are checked against
the ablation's flags. (Running every command would train for hours; the flags are what drifts.)"""

import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", "data/README.md", "tf_ops/README.md"] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))
)
COMMAND = re.compile(r"(?:python (-m [\w.]+|[\w/]+\.py)|bash (run_ablation\.sh))((?:[ \t]+[^\s`|#)]+)*)")
NOT_CHECKED = {"-m pytest"}  # pytest's own flags


def _text(path):
    with open(os.path.join(ROOT, path)) as f:
        return re.sub(r"\\\n\s*", " ", f.read())  # shell line continuations joined


def documented_commands():
    """{(script or '-m module'): {flag: [docs using it]}} of every doc."""
    found = {}
    for doc in DOCS:
        for m in COMMAND.finditer(_text(doc)):
            target = m.group(1) or "claims/ablation.py"
            if target in NOT_CHECKED:
                continue
            flags = found.setdefault(target, {})
            for token in m.group(3).split():
                if token.startswith("--"):
                    flags.setdefault(token.split("=")[0].strip("\"',;:."), []).append(doc)
    return found


COMMANDS = documented_commands()


def test_the_docs_show_commands():
    assert {"rgb/train_rgb.py", "data/make_dataset.py", "claims/ablation.py", "claims/colour_breakdown.py"} <= set(
        COMMANDS
    )


def _help(target):
    argv = target.split() if target.startswith("-m") else [os.path.join(ROOT, target)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, *argv, "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def helps():
    """Every documented command's --help, a few at a time (they mostly wait on imports)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        return dict(zip(sorted(COMMANDS), pool.map(_help, sorted(COMMANDS))))


@pytest.mark.parametrize("target", sorted(COMMANDS))
def test_documented_flags_exist(target, helps):
    if not target.startswith("-m"):
        assert os.path.isfile(os.path.join(ROOT, target)), f"{target}: no such file"
    proc = helps[target]
    assert proc.returncode == 0, f"python {target} --help failed:\n{proc.stderr[-2000:]}"
    listed = set(re.findall(r"--[\w-]+", proc.stdout))
    missing = {flag: docs for flag, docs in COMMANDS[target].items() if flag not in listed and flag != "--help"}
    assert not missing, f"python {target}: flags shown in the docs that its --help does not list: {missing}"


def test_the_readme_stays_short_and_speaks_to_users():
    """The README is the door (at most 200 lines: the rest lives in docs/); no doc speaks of how the
    project was made (issue numbers, "the issue", "in this task")."""
    with open(os.path.join(ROOT, "README.md")) as f:
        n_lines = len(f.read().splitlines())
    assert n_lines <= 200, f"README.md has {n_lines} lines; move detail into docs/"
    making = re.compile(r"\bthe issue\b|\bin this task\b|\bissue #?\d+|(?<![\w(\]/])#\d{2,}\b", re.IGNORECASE)
    for doc in DOCS:
        for i, line in enumerate(_text(doc).splitlines(), 1):
            assert not making.search(line), f"{doc}:{i} speaks of the project's making: {line.strip()}"
