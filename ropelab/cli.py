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
- a command's ``add_arguments`` runs only when argparse selects that command
  (:func:`ropelab.commands.add_subcommands`), so building the arguments of one command never costs another's
  imports (``ropelab eval`` does the same for each evaluation). Each command's arguments, defaults and help are
  exactly those its ``add_arguments`` gives; they are just added on first use.
"""

from __future__ import annotations

import argparse
import os
import sys

import ropelab.commands


def build_parser() -> argparse.ArgumentParser:
    """The ``ropelab`` parser; a command's own arguments are added when parsing selects it."""
    parser = argparse.ArgumentParser(prog="ropelab", description="Extend the context window of RoPE models.")
    ropelab.commands.add_subcommands(parser, ropelab.commands, dest="command", attribute="_run")
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
