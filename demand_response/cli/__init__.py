"""``dr``: the command line. Thin shells over the package functions, one module per command group.

Each group module (``compile``, ``node``, ``deploy``, ``accounts``, ``fund``, ``consumer``,
``utility``, ``meter``, ``register``, ``simulate``, ``demo``, ``web``) has ``add_to(commands)``, which declares its
parser next to its handlers. Every error a user can cause ends with one line on stderr
(``error: ...``) and exit status 1: every ``DRError`` (demand_response.errors) is caught here, in
one place, by type, and so are a full disk and a lost RPC endpoint; a wrong command line exits 2
(argparse); Ctrl-C exits 130. ``dr`` alone, or a group without its action, prints help.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
from typing import Sequence

from . import accounts, consumer, demo, deploy, fund, meter, node, register, simulate, utility, web
from . import compile as compile_group
from ._common import UserError, setup_logging

#: Command group modules in the order ``dr --help`` lists them (each imports only the standard
#: library and _common at module level; a command's work is imported when it runs).
_MODULES = (compile_group, node, deploy, accounts, fund, consumer, utility, meter, register, simulate, demo, web)
#: The command groups' names.
GROUPS = tuple(module.__name__.rpartition(".")[2] for module in _MODULES)

__all__ = ["GROUPS", "UserError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``dr`` argument parser, assembled from the group modules."""
    parser = argparse.ArgumentParser(
        prog="dr", description="Blockchain demand response: market, daemons, simulation.",
        epilog="`dr COMMAND --help` describes a command. Settings come from .env, then the environment, "
               "then flags (README.md, docs/operations.md).")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _MODULES:
        module.add_to(commands)
    for group in commands.choices.values():
        group.set_defaults(help_parser=group)  # `dr utility` alone prints the group's help
    return parser


def _user_error(exc: BaseException) -> str | None:
    """The one line for an error a user caused or can fix, classified by type; None for a bug
    (which keeps its traceback)."""
    from ..errors import DRError, describe_disk_error, disk_error, is_connection_error

    if isinstance(exc, DRError):
        return str(exc)
    disk = disk_error(exc)
    if disk is not None:
        return describe_disk_error(disk)
    if is_connection_error(exc):
        return f"lost the RPC endpoint ({type(exc).__name__}); check that the node is running"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dr``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        (getattr(args, "help_parser", None) or parser).print_help()
        return 0
    setup_logging(args)
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 PID` prints every thread's stack: where is it stuck?
        try:
            faulthandler.register(signal.SIGUSR1, all_threads=True)
        except (ValueError, OSError, AttributeError):  # stderr is not a real file (embedded, tests)
            pass
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Our stdout was closed early (`dr … | head -1`): not a lost node. Point stdout at
        # /dev/null so the interpreter's final flush does not complain again, and stop quietly.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it
    except Exception as exc:
        line = _user_error(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 1
