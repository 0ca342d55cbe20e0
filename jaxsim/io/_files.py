"""Safe file writing: no silent overwrite, no partial file that looks complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def check_writable(path: str | os.PathLike, *, overwrite: bool, what: str = "output"):
    """Raise unless ``path`` may be written (absent, or ``overwrite`` set)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{what} {path} exists; pass overwrite=True (--force)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise FileNotFoundError(f"folder {parent} of {what} {path} does not exist")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"folder {parent} of {what} {path} is not writable")
    return path


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, *, overwrite: bool = False, what: str = "output"
) -> Iterator[Path]:
    """A temporary path beside ``path`` that is renamed onto it only on success.

    Readers never see a half-written file: an exception (or a kill) leaves at most
    a hidden ``.*.partial`` file behind, never ``path`` itself.
    """
    path = check_writable(path, overwrite=overwrite, what=what)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.",
        suffix=".partial",
        dir=path.parent if str(path.parent) else ".",
    )
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual mode
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
