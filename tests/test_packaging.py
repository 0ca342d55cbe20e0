"""Packaging guard rails: the installed package is the source tree, kernels included."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_kernels_import_as_jaxsim_kernels_only(tmp_path):
    code = (
        "import importlib.util, jaxsim.kernels as k\n"
        "assert hasattr(k, 'bssfp_signal')\n"
        "assert importlib.util.find_spec('kernels') is None, 'top-level kernels'\n"
        "print(k.__file__)"
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent.name == "kernels"


def test_importing_kernels_loads_no_heavy_or_io_dependencies(tmp_path):
    code = (
        "import sys, jaxsim.kernels\n"
        "bad = [m for m in ('flax', 'h5py', 'nibabel', 'matplotlib', 'optax')"
        " if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_every_package_directory_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "jaxsim").rglob("__init__.py")
    }
    assert found == listed
    assert "package-dir" not in config  # the source tree is the installed layout
    assert not (ROOT / "tests" / "__init__.py").exists()
    assert not (ROOT / "kernels").exists()


@pytest.mark.integration  # builds a wheel: a minute of CPU
def test_wheel_installs_kernels_under_jaxsim(tmp_path):
    pytest.importorskip("setuptools")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("jaxsim_imaging-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "jaxsim/kernels/_bssfp.py" in names
    assert not any(n.startswith("kernels/") for n in names)
    assert not any(n.startswith("tests/") for n in names)
