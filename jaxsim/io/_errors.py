"""Errors of :mod:`jaxsim.io` whose messages name options.

A library message names a Python argument (``pass overwrite=True``); the command
line renders the same error with its flag (``pass --force``). The message is a
template whose ``{name}`` fields are options: ``str(err)`` fills them with the
Python spelling, :meth:`OptionMessage.render` with whatever the caller maps.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping

__all__ = [
    "CorruptDatabaseError",
    "Interrupted",
    "OptionError",
    "OptionMessage",
    "OutputExistsError",
    "WriteError",
    "escape",
]


def escape(value) -> str:
    """``str(value)`` with braces doubled, for use inside a message template."""
    return str(value).replace("{", "{{").replace("}", "}}")


class OptionMessage:
    """Mixin: an exception message with option fields (see the module docstring).

    Args:
        template: the message; ``{name}`` marks an option (other braces doubled,
            see :func:`escape`).
        **options: ``name -> Python spelling`` (e.g. ``overwrite="overwrite=True"``).
    """

    def __init__(self, template: str, *args, **options: str):
        self.template = template
        self.options = options
        super().__init__(template.format(**options), *args)

    def __str__(self) -> str:
        return self.template.format(**self.options)

    def render(self, names: Mapping[str, str]) -> str:
        """The message with each option ``name`` spelled ``names[name]`` if given."""
        spelled = {k: names.get(k, v) for k, v in self.options.items()}
        return self.template.format(**spelled)


class OptionError(OptionMessage, ValueError):
    """Bad argument value (the message names the argument and the allowed range)."""


class OutputExistsError(OptionMessage, FileExistsError):
    """An output exists and may be replaced only with ``overwrite=True``."""


class CorruptDatabaseError(OptionMessage, ValueError):
    """Stored bytes fail their checksum, or a file is truncated or unreadable.

    Attributes:
        records: indices of the affected records (empty if unknown).
        reason: what is wrong with them, in a few words.
    """

    def __init__(self, template: str, records=(), reason: str = "", **options: str):
        super().__init__(template, **options)
        self.records = tuple(int(r) for r in records)
        self.reason = reason


class Interrupted(OptionMessage, Exception):
    """A run stopped at a record boundary because ``stop()`` asked it to.

    Attributes:
        reason: what ``stop()`` returned (the CLI passes the signal number).
    """

    def __init__(self, template: str, reason=None, **options: str):
        super().__init__(template, **options)
        self.reason = reason


class WriteError(OptionMessage, OSError):
    """Writing a file failed (full disk, quota, I/O error); nothing was committed.

    ``errno`` is the operating system's error number.
    """

    def __init__(self, template: str, err: BaseException, **options: str):
        code = getattr(err, "errno", None) or errno.EIO
        super().__init__(template, **options)
        self.errno = code
        self.strerror = getattr(err, "strerror", None) or os.strerror(code)
