"""Parsing shared by the ``jaxsim`` subcommands (errors name the flag)."""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["parse_spacing"]


def parse_spacing(
    values: str | Iterable[str | float], *, flag: str = "--spacing"
) -> tuple[float, float, float]:
    """Voxel spacing ``(sz, sy, sx)`` in mm from command-line tokens.

    Accepts one value (isotropic) or three (z y x), written as separate tokens
    (``2 1.5 1.5``), comma-separated (``2,1.5,1.5``) or mixed.

    Args:
        values: the tokens of the flag (``nargs="+"``) or one string.
        flag: the flag named in error messages.

    Returns:
        Three positive finite floats.

    Raises:
        ValueError: not 1 or 3 numbers, or a number that is not finite and > 0.

    Example:
        >>> parse_spacing(["10,1.5,1.5"])
        (10.0, 1.5, 1.5)
    """
    tokens = [values] if isinstance(values, str) else list(values)
    pieces = [p.strip() for t in tokens for p in str(t).split(",")]
    try:
        numbers = [float(p) for p in pieces]
    except ValueError:
        raise ValueError(
            f"{flag} takes 1 or 3 numbers in mm (SZ SY SX or SZ,SY,SX); got "
            f"{' '.join(str(t) for t in tokens)!r}"
        ) from None
    if len(numbers) == 1:
        numbers = numbers * 3
    if len(numbers) != 3:
        raise ValueError(
            f"{flag} takes 1 or 3 values (mm), as SZ SY SX or SZ,SY,SX; got "
            f"{len(numbers)}"
        )
    if not all(math.isfinite(v) and v > 0 for v in numbers):
        raise ValueError(f"{flag} must be finite and > 0 mm; got {numbers}")
    return tuple(numbers)
