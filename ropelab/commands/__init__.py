"""Subcommands of the ``ropelab`` CLI, one module each, and the one way they are found (:func:`add_subcommands`).

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. ``ropelab/cli.py``
adds the modules of this package; ``ropelab eval`` adds those of ``_eval/`` (one per evaluation) the same way.
A module without ``NAME`` (``_eval/options.py``, a name starting with ``_``) is a helper, not a command.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import pkgutil
from collections.abc import Callable
from types import ModuleType


class _LazySubcommands(argparse._SubParsersAction):
    """Subparsers whose arguments are added when argparse selects them, so that building one command's arguments
    never costs another's imports.

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


def add_subcommands(parser: argparse.ArgumentParser, package: ModuleType, dest: str, attribute: str) -> None:
    """One subcommand of ``parser`` per command module of ``package`` (module-name order); the chosen module's
    ``run`` is ``args.<attribute>``. Each module's arguments are added only when argparse selects it."""
    sub = parser.add_subparsers(dest=dest, required=True, metavar=dest.upper(), action=_LazySubcommands)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if not hasattr(module, "NAME"):
            continue
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        sub.pending[module.NAME] = functools.partial(module.add_arguments, command)
        command.set_defaults(**{attribute: module.run})
