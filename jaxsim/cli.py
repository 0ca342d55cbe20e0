"""The ``jaxsim`` command line."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence

from jaxsim import __version__

# Each subcommand module provides ``add_parser(subparsers)`` returning its parser
# with ``func`` set to a callable taking the parsed arguments.
_SUBCOMMANDS = (
    "jaxsim._cli_signal",
    "jaxsim._cli_population",
    "jaxsim._cli_tag",
    "jaxsim._cli_fit",
    "jaxsim._cli_ct",
    "jaxsim._cli_train",
    "jaxsim._cli_sim2real",
    "jaxsim._cli_evaluate",
    "jaxsim._cli_twin",
    "jaxsim._cli_translate",
    "jaxsim._cli_glo",
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


#: How command-line errors spell the library's options (a subcommand may add
#: its own with ``set_defaults(flags={...})``).
FLAGS = {
    "overwrite": "--force",
    "resume": "--resume",
    "repair": "'jaxsim population ... --resume --repair'",
}


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Callable[[], int | None]]:
    """Turn SIGINT/SIGTERM into a request to stop at the next record boundary.

    Yields a callable returning the signal number once one has arrived (for the
    ``stop`` argument of long library calls); a second signal stops at once.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def handler(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: received[0] if received else None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _message(err: BaseException, args: argparse.Namespace) -> str:
    from jaxsim.io import OptionMessage

    if isinstance(err, OptionMessage):
        return err.render({**FLAGS, **getattr(args, "flags", {})})
    return str(err)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    name = f"jaxsim {args.command}"
    try:
        if getattr(args, "stoppable", False):
            with stop_on_signals() as stop:
                args.stop = stop
                return int(func(args) or 0)
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as err:
        code = _exit_code(err)
        if code is None:
            raise
        if code > 128:  # stopped by a signal at a record boundary
            what = signal.Signals(code - 128).name
            print(f"{name}: {what}: {_message(err, args)}", file=sys.stderr)
        else:
            print(f"{name}: error: {_message(err, args)}", file=sys.stderr)
        return code


def _exit_code(err: Exception) -> int | None:
    """Exit code for an error reported in one line (None: let it propagate)."""
    from jaxsim.io import Interrupted

    if isinstance(err, Interrupted):
        signals = {int(s) for s in signal.Signals}
        reason = err.reason
        valid = isinstance(reason, int) and not isinstance(reason, bool)
        return 128 + (reason if valid and reason in signals else signal.SIGINT)
    if isinstance(
        err, (ValueError, FileExistsError, FileNotFoundError, PermissionError)
    ):
        return 2
    if isinstance(err, OSError):  # a failing disk: one line, not a traceback
        return 1
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
