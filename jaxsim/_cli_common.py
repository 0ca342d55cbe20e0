"""Parsing shared by the ``jaxsim`` subcommands (errors name the flag)."""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["parse_spacing", "spacing_values"]


def spacing_values(values: str | Iterable[str | float], *, flag: str = "--spacing"):
    """The numbers of a spacing flag, written as separate tokens (``2 1.5 1.5``),
    comma-separated (``2,1.5,1.5``) or mixed; each finite and > 0 mm."""
    tokens = [values] if isinstance(values, str) else list(values)
    pieces = [p.strip() for t in tokens for p in str(t).split(",") if p.strip()]
    try:
        numbers = [float(p) for p in pieces]
    except ValueError:
        raise ValueError(
            f"{flag} takes numbers in mm (SZ SY SX or SZ,SY,SX); got "
            f"{' '.join(str(t) for t in tokens)!r}"
        ) from None
    if not numbers or not all(math.isfinite(v) and v > 0 for v in numbers):
        raise ValueError(f"{flag} must be finite and > 0 mm; got {numbers}")
    return numbers


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
    numbers = spacing_values(values, flag=flag)
    if len(numbers) == 1:
        numbers = numbers * 3
    if len(numbers) != 3:
        raise ValueError(
            f"{flag} takes 1 or 3 values (mm), as SZ SY SX or SZ,SY,SX; got "
            f"{len(numbers)}"
        )
    return tuple(numbers)
