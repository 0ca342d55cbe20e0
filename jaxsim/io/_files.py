"""Safe file writing: no silent overwrite, no partial file that looks complete.

Every byte jaxsim writes to a database goes through :func:`write_bytes` or a
:class:`HookedFile`; both call the hook installed with :func:`write_hook` before
each write, so tests can fail or kill a run at any write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ._errors import OptionError, OutputExistsError, WriteError, escape

__all__ = [
    "HookedFile",
    "atomic_path",
    "check_writable",
    "exclusive_lock",
    "fsync_dir",
    "remove_tree",
    "write_bytes",
    "write_hook",
]

#: Size of the pieces :func:`write_bytes` writes (each one a hook point).
PIECE = 1 << 20

_hook_lock = threading.Lock()
_hook: Callable[[Path, int, int], None] | None = None


@contextlib.contextmanager
def write_hook(hook: Callable[[Path, int, int], None]) -> Iterator[None]:
    """Call ``hook(path, offset, nbytes)`` before every database write.

    For fault injection: the hook may raise ``OSError`` (a failing write or a
    full disk: the write does not happen) or end the process. Covers database
    files (parts, index, consolidated and merged files, journal metadata);
    nothing else.

    Example:
        >>> def full(path, offset, nbytes):
        ...     raise OSError(errno.ENOSPC, "No space left on device")
        >>> with write_hook(full):
        ...     generate_database(design, "x.h5")  # raises WriteError
    """
    global _hook
    with _hook_lock:
        previous, _hook = _hook, hook
    try:
        yield
    finally:
        with _hook_lock:
            _hook = previous


def _call_hook(path: Path, offset: int, nbytes: int) -> None:
    hook = _hook
    if hook is not None:
        hook(path, offset, nbytes)


def check_writable(
    path: str | os.PathLike,
    *,
    overwrite: bool,
    what: str = "output",
    argument: str = "path",
) -> Path:
    """Raise unless ``path`` may be written (absent, or ``overwrite`` set).

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
        OptionError: ``path`` is a folder.
        FileNotFoundError, PermissionError: its folder is absent or read-only.
    """
    path = Path(path)
    if path.is_dir():
        raise OptionError(
            f"{{{argument}}} {escape(path)} is a folder; give the {escape(what)} "
            "a file name",
            **{argument: argument},
        )
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{escape(what)} {escape(path)} exists; pass {{overwrite}} to replace it",
            overwrite="overwrite=True",
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"folder {parent} of {what} {path} does not exist")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"folder {parent} of {what} {path} is not writable")
    return path


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename is durable only after this)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # folders cannot be opened everywhere (Windows)
        return
    try:
        os.fsync(fd)
    except OSError as err:  # some file systems cannot sync folders
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _temporary(path: Path, suffix: str = ".partial") -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual mode
    return Path(tmp)


def _commit(tmp: Path, path: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, *, overwrite: bool = False, what: str = "output"
) -> Iterator[Path]:
    """A temporary path beside ``path`` that is renamed onto it only on success.

    Readers never see a half-written file: an exception (or a kill) leaves at most
    a hidden ``.*.partial`` file behind, never ``path`` itself.
    """
    path = check_writable(path, overwrite=overwrite, what=what)
    tmp = _temporary(path)
    try:
        yield tmp
        _commit(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: Path, data, *, what: str) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename).

    Raises:
        WriteError: the write failed (nothing at ``path`` changed).
    """
    view = memoryview(data).cast("B")
    tmp = _temporary(path, ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY)
        try:
            for offset in range(0, len(view), PIECE):
                piece = view[offset : offset + PIECE]
                _call_hook(path, offset, len(piece))
                _pwrite_all(fd, piece, offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as err:
        raise _write_error(what, path, err) from err
    finally:
        if tmp.exists():
            tmp.unlink()


def _pwrite(fd: int, data: memoryview, offset: int) -> int:
    if hasattr(os, "pwrite"):
        return os.pwrite(fd, data, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows
    return os.write(fd, data)


def _pread(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows
    return os.read(fd, size)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        n = _pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def _write_error(what: str, path: Path, err: OSError) -> WriteError:
    if isinstance(err, WriteError):
        return err
    reason = err.strerror or str(err)
    return WriteError(
        f"cannot write {escape(what)} {escape(path)}: {escape(reason)}", err
    )


class HookedFile:
    """A file object for h5py's ``fileobj`` driver that never raises into HDF5.

    HDF5 is not safe against exceptions raised inside its I/O callbacks, so the
    first failure (an ``OSError`` from the disk or the hook, or a
    ``KeyboardInterrupt``) is recorded, later writes are dropped, and
    :meth:`check` re-raises it once control is back in Python. The file is
    temporary: after a failure its content is garbage and must be deleted.
    """

    def __init__(self, path: Path, *, what: str, shown: Path | None = None):
        self.path, self.what = path, what
        self.shown = path if shown is None else shown  # named in errors
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        self.pos = 0
        self.error: BaseException | None = None

    # ---- the file-object protocol h5py uses
    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 0:
            self.pos = pos
        elif whence == 1:
            self.pos += pos
        else:
            self.pos = os.fstat(self.fd).st_size + pos
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = max(0, os.fstat(self.fd).st_size - self.pos)
        data = _pread(self.fd, size, self.pos)
        self.pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = _pread(self.fd, len(view), self.pos)
        view[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        if self.error is None:
            try:
                _call_hook(self.shown, self.pos, n)
                _pwrite_all(self.fd, view, self.pos)
            except BaseException as err:  # noqa: BLE001 - re-raised by check()
                self.error = err
        self.pos += n
        return n

    def truncate(self, size: int | None = None) -> int:
        size = self.pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self.fd, size)
            except OSError as err:
                self.error = err
        return size

    def flush(self) -> None:
        pass

    # ---- for the writer
    def check(self) -> None:
        """Re-raise the first failure (as :class:`WriteError` if an OSError)."""
        err = self.error
        if err is None:
            return
        if isinstance(err, OSError):
            raise _write_error(self.what, self.shown, err) from err
        raise err

    def sync(self) -> None:
        """fsync the file (raises :class:`WriteError`)."""
        self.check()
        try:
            os.fsync(self.fd)
        except OSError as err:
            raise _write_error(self.what, self.shown, err) from err

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def remove_tree(folder: Path) -> None:
    """Delete a folder: renamed aside first, so a kill leaves no half-folder."""
    if not folder.exists():
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    os.replace(folder, trash / folder.name)
    shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def exclusive_lock(path: Path, *, what: str) -> Iterator[None]:
    """Hold an advisory lock beside ``path``: one writer per output at a time.

    The lock file ``.NAME.lock`` is removed on release (a killed process leaves
    it behind, unlocked, and the next writer takes it over).

    Raises:
        OptionError: another process holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # no advisory locks here (Windows): no guard
        yield
        return
    lock = path.parent / f".{path.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OptionError(
                f"another process is writing {escape(what)} {escape(path)} "
                f"(it holds {escape(lock)}); wait for it to finish"
            ) from None
        try:  # the holder before us may have removed the file we opened
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)
