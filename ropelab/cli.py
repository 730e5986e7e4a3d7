"""The ``ropelab`` command line. Each subcommand is one module in ``ropelab/commands/`` that defines
``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; they are found automatically.

Bad input prints one line (``ropelab: error: ...``) and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import ropelab.commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ropelab", description="Extend the context window of RoPE models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(ropelab.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"ropelab.commands.{info.name}")
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"ropelab: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ropelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
