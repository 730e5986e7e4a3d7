"""The ``ropelab`` command line. Each subcommand is one module in ``ropelab/commands/`` that defines
``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; they are found automatically. A name
starting with ``_`` there is a helper of the commands, not a command (``_eval``: the glue of ``ropelab eval``).

Bad input prints one line (``ropelab: error: ...``) and exits with status 2, without a traceback. The same
exception types can come from deep inside torch or transformers (a real bug, not bad input): with
``ROPELAB_DEBUG=1`` in the environment they propagate with their traceback instead.

Start-up stays fast (``ropelab --help`` and ``ropelab plan ...`` load neither torch, transformers nor matplotlib)
by two rules:

- a command module imports only light modules at module level (the standard library, numpy, the torch-free core
  of ``ropelab``); torch, transformers, matplotlib and the like are imported inside the functions that use them.
  :func:`build_parser` imports every command module, for its ``NAME`` and ``HELP``;
- a command's ``add_arguments`` runs only when argparse selects that command (:class:`_LazySubcommands`), so
  building the arguments of one command never costs another's imports (``ropelab eval`` imports every
  evaluation module to build its arguments). Each command's arguments, defaults and help are exactly those
  its ``add_arguments`` gives; they are just added on first use.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import pkgutil
import sys
from collections.abc import Callable

import ropelab.commands


class _LazySubcommands(argparse._SubParsersAction):
    """Subparsers whose arguments are added when argparse selects them (see the module docstring).

    ``pending`` maps a command name to the function that adds its arguments; argparse calls this action with the
    chosen name first in ``values`` (an invalid name is rejected before), and it runs that function once.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pending: dict[str, Callable[[], None]] = {}

    def __call__(self, parser, namespace, values, option_string=None):
        add_arguments = self.pending.pop(values[0], None)
        if add_arguments is not None:
            add_arguments()
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> argparse.ArgumentParser:
    """The ``ropelab`` parser; a command's own arguments are added when parsing selects it."""
    parser = argparse.ArgumentParser(prog="ropelab", description="Extend the context window of RoPE models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", action=_LazySubcommands)
    for info in sorted(pkgutil.iter_modules(ropelab.commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"ropelab.commands.{info.name}")
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        sub.pending[module.NAME] = functools.partial(module.add_arguments, command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        if os.environ.get("ROPELAB_DEBUG", "") not in ("", "0"):
            raise
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"ropelab: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ropelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
