"""Every Python example of the README runs from the repository root, where the quick
start leaves a user, against the installed package.

The source folder ``jaxsim/`` is on the path there (Python puts the current
folder first): it must be a complete package by itself, kernels included, so an
installed package and the source tree can never disagree about what exists. The
editable-install hook is removed in the subprocess to make sure of it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)

# The editable install's import hook, dropped so that only the folders on
# sys.path (the repository root first) can provide ``jaxsim``.
PRELUDE = (
    "import sys\n"
    "sys.meta_path[:] = [f for f in sys.meta_path "
    "if 'editable' not in str(getattr(f, '__module__', '')).lower()]\n"
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def quick_database(tmp_path_factory):
    """The main command's database, for the README block that reads it."""
    out = tmp_path_factory.mktemp("quick") / "quick.h5"
    result = subprocess.run(
        [sys.executable, "-m", "jaxsim.cli", "population", "--preset", "quick",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs_from_the_repository_root(index, quick_database):
    code = BLOCKS[index].replace('"quick.h5"', repr(str(quick_database)))
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"block {index}:\n{code}\n{result.stderr[-3000:]}"


def test_the_source_tree_is_a_complete_package():
    """From the root, without the editable hook, jaxsim.kernels still imports."""
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + "import jaxsim.kernels, jaxsim; "
         "print(jaxsim.__file__)"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert Path(result.stdout.strip()).parent == ROOT / "jaxsim"
