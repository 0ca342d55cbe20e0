"""The ``jaxsim`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from jaxsim import __version__

# Each subcommand module provides ``add_parser(subparsers)`` returning its parser
# with ``func`` set to a callable taking the parsed arguments.
_SUBCOMMANDS = (
    "jaxsim._cli_signal",
    "jaxsim._cli_population",
    "jaxsim._cli_tag",
    "jaxsim._cli_fit",
    "jaxsim._cli_ct",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxsim",
        description=(
            "Simulate labelled cardiac MR and CT images by differentiable physics. "
            "Run 'jaxsim COMMAND --help' for a command's options."
        ),
    )
    parser.add_argument("--version", action="version", version=f"jaxsim {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import importlib

    for name in _SUBCOMMANDS:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except (ValueError, FileExistsError, FileNotFoundError, PermissionError) as err:
        print(f"jaxsim {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
