"""The `ropelab` command line itself: every command builds its arguments, and start-up loads no heavy library."""

import pkgutil
import subprocess
import sys

import pytest
import torch

import ropelab.commands
from ropelab.cli import main
from ropelab.commands._eval.options import resolve_device

COMMANDS = sorted(m.name for m in pkgutil.iter_modules(ropelab.commands.__path__) if not m.name.startswith("_"))
EVALUATIONS = ["longbench", "niah", "passkey", "ppl", "retention"]
HEAVY = ("torch", "transformers", "matplotlib", "accelerate")


def test_help_and_plan_import_no_heavy_library():
    """`ropelab --help`, `ropelab plan --help` and a plan run on a preset load none of torch, transformers,
    matplotlib, accelerate (checked in a fresh interpreter)."""
    code = "\n".join([
        "import contextlib, io, sys",
        "import ropelab.cli",
        "ropelab.cli.build_parser()",
        "for argv in (['--help'], ['plan', '--help']):",
        "    with contextlib.redirect_stdout(io.StringIO()):",
        "        try:",
        "            ropelab.cli.main(argv)",
        "        except SystemExit as exit:",
        "            assert exit.code == 0, exit.code",
        "argv = ['plan', '--preset', 'llama2-7b', '--method', 'dprope', '--target-length', '8192']",
        "with contextlib.redirect_stdout(io.StringIO()):",
        "    assert ropelab.cli.main(argv) == 0",
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))",
    ])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert all(f"\n    {name}" in out for name in COMMANDS)


@pytest.mark.parametrize("argv", [[name] for name in COMMANDS] + [["eval", e] for e in EVALUATIONS]
                         + [["notebooks", "run"], ["notebooks", "clean"]], ids=" ".join)
def test_every_command_builds_its_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        main([*argv, "--help"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: ropelab {' '.join(argv)} [-h]")


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["bogus"])
    assert exit.value.code == 2
    assert "ropelab: error: argument COMMAND: invalid choice: 'bogus'" in capsys.readouterr().err


def test_device_is_chosen_when_the_model_loads(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "ppl", "--help"])
    assert "torch device (default: cuda if available, else cpu)" in " ".join(capsys.readouterr().out.split())
    assert resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"


def test_bad_input_is_one_line_unless_debugging(monkeypatch, capsys):
    """A ValueError is one `ropelab: error:` line and status 2; with ROPELAB_DEBUG=1 it keeps its traceback."""
    argv = ["plan", "--preset", "llama2-7b", "--method", "dprope", "--target-length", "-5"]
    monkeypatch.delenv("ROPELAB_DEBUG", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ropelab: error: ") and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("ROPELAB_DEBUG", "1")
    with pytest.raises(ValueError):
        main(argv)
