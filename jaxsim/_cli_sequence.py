"""The bSSFP sequence flags shared by CLI commands (ms and degrees on the line)."""

from __future__ import annotations

import argparse
import math


def add_bssfp_arguments(p: argparse.ArgumentParser, *, field_help: str) -> None:
    """Add ``--field``, ``--tr`` (ms), ``--te`` (ms) and ``--flip`` (degrees)."""
    p.add_argument(
        "--field",
        type=float,
        default=1.5,
        choices=(1.5, 3.0),
        help=f"{field_help} (default 1.5)",
    )
    p.add_argument(
        "--tr",
        type=float,
        default=3.1,
        metavar="MS",
        help="repetition time in ms (default 3.1)",
    )
    p.add_argument(
        "--te",
        type=float,
        default=None,
        metavar="MS",
        help="echo time in ms, in (0, TR] (default TR/2)",
    )
    p.add_argument(
        "--flip",
        type=float,
        default=60.0,
        metavar="DEG",
        help="flip angle in degrees, in [0, 180] (default 60)",
    )


def bssfp_from_args(args: argparse.Namespace, *, allow_zero_flip: bool = True):
    """Validated ``(tr s, te s, flip rad)`` from the flags.

    Raises:
        ValueError: naming the flag and its allowed range.
    """
    if not args.tr > 0:
        raise ValueError(f"--tr must be > 0 ms; got {args.tr}")
    tr = args.tr * 1e-3
    te = tr / 2 if args.te is None else args.te * 1e-3
    if not 0 < te <= tr:
        raise ValueError(f"--te must lie in (0, TR={args.tr}] ms; got {te * 1e3:g}")
    low_ok = args.flip >= 0 if allow_zero_flip else args.flip > 0
    if not (low_ok and args.flip <= 180):
        interval = "[0, 180]" if allow_zero_flip else "(0, 180]"
        raise ValueError(f"--flip must lie in {interval} degrees; got {args.flip}")
    return tr, te, math.radians(args.flip)
