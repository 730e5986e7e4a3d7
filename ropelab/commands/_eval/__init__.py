"""The command-line glue of ``ropelab eval``: one module per evaluation, plus :mod:`.options` (shared arguments,
the one model loader, output-path checks). Found by :mod:`ropelab.commands.eval`; the library in
:mod:`ropelab.eval` never imports it."""
