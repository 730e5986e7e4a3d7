"""Subcommands of the ``ropelab`` CLI, one module each (see ropelab/cli.py)."""
