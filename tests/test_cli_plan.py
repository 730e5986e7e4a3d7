"""`ropelab plan`: table and JSON output, every way to name the RoPE, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from ropelab import RopePlan
from ropelab.cli import main


def test_plan_json_matches_api(capsys):
    assert main(["plan", "--preset", "llama2-7b", "--method", "dprope", "--target-length", "8192", "--json"]) == 0
    plan = RopePlan.from_json(capsys.readouterr().out)
    assert round(plan.disturbance * 1e3, 2) == pytest.approx(6.72, abs=0.01) and plan.n_interpolated_dims == 92


def test_plan_table(capsys):
    main(["plan", "--rope-theta", "10000", "--head-dim", "128", "--original-length", "4096", "--method", "yarn",
          "--target-length", "16384"])
    out = capsys.readouterr().out
    assert "pair   wavelength   D_extrap   D_interp   factor  choice" in out
    assert out.count("\n") == 64 + 3 and "blend" in out and "disturbance 35.43 x1e-3" in out


def test_plan_from_model_folder_and_options(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "llama", "hidden_size": 576, "num_attention_heads": 9, "rope_theta": 100000,
         "max_position_embeddings": 8192}))
    out = tmp_path / "plan.json"
    assert main(["plan", "--model", str(tmp_path), "--method", "dprope", "--target-length", "16384", "--n-hat", "40",
                 "--bins", "180", "--metric", "wasserstein", "--out", str(out)]) == 0
    plan = RopePlan.load(out)
    assert (plan.n_interpolated_dims, plan.bins, plan.metric) == (40, 180, "wasserstein")


@pytest.mark.parametrize("args,message", [
    (["--preset", "llama2-7b", "--method", "dprope", "--target-length", "4096"],
     "target_length must be above the original length 4096, got 4096"),
    (["--preset", "llama2-7b", "--method", "magic", "--target-length", "8192"], "unknown method 'magic'"),
    (["--preset", "llama2-7b", "--method", "dprope", "--target-length", "8192", "--n-hat", "3"], "n_hat must be"),
    (["--rope-theta", "10000", "--head-dim", "127", "--original-length", "4096", "--method", "pi",
      "--target-length", "8192"], "even rotary dimension"),
    (["--method", "pi", "--target-length", "8192"], "give exactly one of --model, --preset"),
    (["--model", "/nonexistent", "--method", "pi", "--target-length", "8192"], "no config.json at '/nonexistent'"),
])
def test_errors_exit_2_with_one_line(args, message):
    proc = subprocess.run([sys.executable, "-m", "ropelab.cli", "plan", *args], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("ropelab: error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_config_without_rope(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 768, "n_head": 12}))
    proc = subprocess.run([sys.executable, "-m", "ropelab.cli", "plan", "--model", str(tmp_path), "--method", "pi",
                           "--target-length", "8192"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "model_type 'gpt2' has no RoPE" in proc.stderr


# --- options derived from the registry -------------------------------------------------------------------------


def test_every_method_option_is_a_flag_with_its_help(capsys):
    from ropelab.commands.plan import cli_options
    from ropelab.rope.registry import METHODS, option_specs

    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    out = "".join(capsys.readouterr().out.split())  # argparse wraps help lines (also at hyphens)
    flags = {option.name: (option, methods) for option, methods in cli_options().items()}
    for method in METHODS:
        for option in option_specs(method):
            shown, methods = flags[option.name]
            assert method in methods and shown.kind == option.kind  # one flag, one type
            assert f"--{option.name.replace('_', '-')}" in out
            assert "".join(f"{'/'.join(methods)}: {shown.help}".split()) in out


def test_a_new_method_needs_only_its_function():
    """A method registered at run time gets its CLI flag and its (longrope) transformers mapping with no other edit."""
    import argparse

    import numpy as np

    from ropelab import RopeSpec, make_plan
    from ropelab.commands.plan import add_method_arguments, method_options_from_args
    from ropelab.rope.registry import METHODS, register
    from ropelab.rope.scoring import Extension
    from ropelab.runtime.hf import rope_parameters

    def halve_slowest(spec, target_length, scoring, count: int = 1) -> Extension:
        """Interpolate the ``count`` slowest pairs.

        Args:
            count: how many of the slowest pairs to interpolate.
        """
        factors = np.ones(spec.n_pairs)
        factors[spec.n_pairs - count:] = target_length / spec.original_length
        return Extension(factors)

    try:
        register()(halve_slowest)
        parser = argparse.ArgumentParser()
        add_method_arguments(parser)
        args = parser.parse_args(["--method", "halve_slowest", "--target-length", "8192", "--count", "3"])
        options = method_options_from_args(args)
        assert options == {"count": 3}
        plan = make_plan(args.method, RopeSpec.preset("llama2-7b"), args.target_length, **options)
        params = rope_parameters(plan)
        assert params["rope_type"] == "longrope" and params["long_factor"][-3:] == [2.0] * 3
    finally:
        METHODS.pop("halve_slowest", None)


def test_register_refuses_an_option_without_help():
    from ropelab.rope.registry import METHODS, register

    def undocumented(spec, target_length, scoring, width: float = 1.0):
        """No Args section."""

    with pytest.raises(TypeError, match="option 'width' needs one of the types"):
        register()(undocumented)
    METHODS.pop("undocumented", None)


def test_new_method_options_and_attention_temperature_on_the_command_line(capsys):
    assert main(["plan", "--preset", "smollm2-135m", "--method", "dprope_robust", "--target-length", "16384",
                 "--beta", "16", "--floor", "true", "--attention-temperature", "true", "--json"]) == 0
    plan = RopePlan.from_json(capsys.readouterr().out)
    assert plan.options == {"beta": 16.0, "floor": True, "attention_temperature": True}
    assert plan.attention_factor == pytest.approx(0.1 * __import__("math").log(2) + 1)
    assert main(["plan", "--preset", "llama2-7b", "--method", "dprope_candidates", "--target-length", "8192",
                 "--candidates", "extrapolate,pi", "--json"]) == 0
    assert RopePlan.from_json(capsys.readouterr().out).n_interpolated_dims == 92


@pytest.mark.parametrize("args,message", [
    (["--method", "dprope_robust", "--floor", "maybe"], "--floor must be true or false, got 'maybe'"),
    (["--method", "pi", "--attention-temperature", "hot"], "--attention-temperature must be true, false or a number"),
    (["--method", "dprope_candidates", "--candidates", "pi,clex"], "candidates must be distinct names among"),
    (["--method", "dprope_continuous", "--max-factor", "3"], "factor bounds must satisfy"),
])
def test_new_option_errors_exit_2_with_one_line(args, message):
    proc = subprocess.run([sys.executable, "-m", "ropelab.cli", "plan", "--preset", "llama2-7b", "--target-length",
                           "8192", *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr
