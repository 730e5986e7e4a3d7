"""``python -m ropelab.train`` and ``accelerate launch -m ropelab.train``: the ``ropelab train`` command.

An entry script of the command layer kept beside the package so the documented ``-m ropelab.train`` works; no
module of the library imports it (nor ``ropelab.cli``).
"""

import sys

from ropelab.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
