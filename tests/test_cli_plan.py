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
