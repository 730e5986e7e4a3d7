"""Bad input to every command: exit status 2, one line on stderr (``ropelab: error: ...``) naming the bad value,
no output written and no existing file touched.

Each case runs ``ropelab.cli.main`` in-process on tiny random models saved in a temporary folder (a model without
tokenizer, without weights, with a truncated safetensors file, with a malformed config.json), broken YAML/JSON
files and notebooks; one case runs the real command line in a subprocess (exit status, no traceback).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ropelab.cli import main
from ropelab.config import CONFIG_DIR

FIXTURES = Path(__file__).parent / "fixtures"
TRAIN = str(CONFIG_DIR / "train" / "tiny-quick-2x.yaml")
EVALUATIONS = {  # the arguments each evaluation needs besides --model, chosen so that a good model would run
    "ppl": ["--lengths", "32", "--stride", "16", "--text-file", "{root}/text.txt"],
    "retention": ["--lengths", "32", "--method", "pi", "--target-length", "128", "--text-file", "{root}/text.txt"],
    "passkey": ["--lengths", "64", "--depths", "0", "--trials", "1"],
    "niah": ["--lengths", "64", "--depths", "0"],
    "ruler": ["--tasks", "niah_single_1", "--lengths", "256", "--samples", "1"],
    "longbench": ["--data-dir", str(FIXTURES / "longbench"), "--tasks", "trec", "--limit", "1"],
}
MODEL_FAULTS = [  # (--model, what the error line must name)
    ("{root}/missing", "missing"),
    ("{root}/llama-notok", "has no tokenizer"),
    ("{root}/noweights", "no file named model.safetensors"),
    ("{root}/truncated", "cannot load model '{root}/truncated'"),
    ("{root}/badconfig", "badconfig/config.json' is not a valid JSON"),
]
OPTION_FAULTS = [  # (extra arguments for a good model, what the error line must name)
    (["--dtype", "float33"], "--dtype 'float33'"),
    (["--device", "bogus"], "--device 'bogus'"),
    (["--csv", "{root}"], "--csv '{root}' is a folder"),
    (["--csv", "{root}/a-file/rows.csv"], "which is a file"),
]
CASES = [
    *[pytest.param(["eval", name, "--model", model, *extra], message, id=f"eval-{name}-{Path(model).name}")
      for name, extra in EVALUATIONS.items() for model, message in MODEL_FAULTS],
    *[pytest.param(["eval", name, "--model", "{root}/llama", *extra, *bad], message, id=f"eval-{name}-{bad[0]}-{i}")
      for name, extra in EVALUATIONS.items() for i, (bad, message) in enumerate(OPTION_FAULTS)],
    # numbers that used to run silently wrong
    pytest.param(["eval", "passkey", "--model", "{root}/llama", "--lengths", "200.5"], "'200.5'", id="passkey-float"),
    pytest.param(["eval", "passkey", "--model", "{root}/llama", "--lengths", "0"], "--lengths must be positive",
                 id="passkey-zero-length"),
    pytest.param(["eval", "passkey", "--model", "{root}/llama", "--depths", "1.5"], "1.5", id="passkey-depth"),
    pytest.param(["eval", "passkey", "--model", "{root}/llama", "--depths", "x"], "--depths", id="passkey-depth-text"),
    pytest.param(["eval", "passkey", "--model", "{root}/llama", "--trials", "0"], "--trials", id="passkey-trials"),
    pytest.param(["eval", "passkey", "--model", "{root}/llama", "--method", "pi,yarn", "--target-length", "128"],
                 "'pi,yarn'", id="passkey-two-methods"),
    pytest.param(["eval", "niah", "--model", "{root}/llama", "--lengths", "64.5"], "'64.5'", id="niah-float"),
    pytest.param(["eval", "niah", "--model", "{root}/llama", "--depths", "-0.1"], "-0.1", id="niah-depth"),
    pytest.param(["eval", "longbench", "--model", "{root}/llama", *EVALUATIONS["longbench"][:4], "--limit", "-1"],
                 "--limit must be a positive integer, got -1", id="longbench-limit"),
    pytest.param(["eval", "longbench", "--model", "{root}/llama", *EVALUATIONS["longbench"], "--max-length", "-5"],
                 "--max-length", id="longbench-max-length"),
    pytest.param(["eval", "longbench", "--model", "{root}/llama", *EVALUATIONS["longbench"], "--max-new-tokens", "0"],
                 "--max-new-tokens", id="longbench-max-new-tokens"),
    pytest.param(["eval", "longbench", "--model", "{root}/llama", *EVALUATIONS["longbench"], "--csv", "{root}/rows.csv"],
                 "--csv (its .summary.csv) '{root}/rows.summary.csv' is a folder", id="longbench-summary-csv"),
    pytest.param(["eval", "longbench", "--model", "{root}/llama", "--data-dir", "{root}/missing"], "missing",
                 id="longbench-data-dir"),
    pytest.param(["eval", "longbench", "--model", "{root}/llama", *EVALUATIONS["longbench"][:2], "--tasks", "bogus"],
                 "bogus", id="longbench-task"),
    pytest.param(["eval", "ppl", "--model", "{root}/llama", *EVALUATIONS["ppl"], "--max-docs", "-1"],
                 "--max-docs must be a positive integer, got -1", id="ppl-max-docs"),
    pytest.param(["eval", "ppl", "--model", "{root}/llama", *EVALUATIONS["ppl"], "--batch-tokens", "0"],
                 "--batch-tokens", id="ppl-batch-tokens"),
    pytest.param(["eval", "ppl", "--model", "{root}/llama", "--lengths", "32", "--stride", "0"], "--stride",
                 id="ppl-stride"),
    pytest.param(["eval", "ppl", "--model", "{root}/llama", "--lengths", "32", "--stride", "16", "--protocol", "foo"],
                 "'foo'", id="ppl-protocol"),
    pytest.param(["eval", "ppl", "--model", "{root}/llama", "--lengths", "32", "--stride", "16",
                  "--text-dir", "{root}/missing"], "missing", id="ppl-text-dir"),
    pytest.param(["eval", "ppl", "--model", "{root}/llama", *EVALUATIONS["ppl"], "--method", "yarn",
                  "--target-length", "128", "--attention-factor", "-1"], "attention_factor", id="ppl-attention"),
    pytest.param(["eval", "retention", "--model", "{root}/llama", *EVALUATIONS["retention"], "--max-docs", "-1"],
                 "--max-docs", id="retention-max-docs"),
    pytest.param(["eval", "retention", "--model", "{root}/llama", "--text-file", "{root}/text.txt"], "--method",
                 id="retention-no-method"),
    # plan (the JSON a user points at)
    pytest.param(["plan", "--model", "{root}/bad.json", "--method", "pi", "--target-length", "128"],
                 "bad.json' is not valid JSON", id="plan-bad-json"),
    pytest.param(["plan", "--model", "{root}/list.json", "--method", "pi", "--target-length", "128"],
                 "list.json' must hold a JSON object", id="plan-json-list"),
    pytest.param(["plan", "--preset", "llama2-7b", "--method", "yarn", "--target-length", "8192",
                  "--attention-factor", "-1"], "attention_factor must be positive", id="plan-attention"),
    pytest.param(["plan", "--model", "{root}/gemma3", "--layer-type", "nope", "--method", "pi", "--target-length",
                  "128"], "unknown layer_type 'nope'; allowed: full_attention, sliding_attention", id="plan-layer-type"),
    pytest.param(["plan", "--model", "{root}/llama", "--layer-type", "full_attention", "--method", "pi",
                  "--target-length", "128"], "layer_type 'full_attention' given but the config has one RoPE",
                 id="plan-layer-type-single-rope"),
    pytest.param(["plan", "--preset", "llama2-7b", "--method", "pi", "--target-length", "8192",
                  "--out", "{root}/a-file/sub/plan.json"], "--out '{root}/a-file/sub/plan.json' lies under "
                 "'{root}/a-file', which is a file", id="plan-out-under-file"),
    pytest.param(["plan", "--preset", "llama2-7b", "--method", "pi", "--target-length", "8192",
                  "--out", "{root}"], "--out '{root}' is a folder", id="plan-out-folder"),
    # extend
    pytest.param(["extend", "--model", "{root}/llama", "--method", "pi", "--target-length", "128",
                  "--out", "{root}/a-file"], "is a file, not a folder", id="extend-out-file"),
    pytest.param(["extend", "--model", "{root}/llama", "--method", "pi", "--target-length", "128", "--out", "{out}",
                  "--gguf", "{root}/a-file/m.gguf"], "GGUF output '{root}/a-file/m.gguf' lies under '{root}/a-file', "
                 "which is a file", id="extend-gguf-under-file"),
    pytest.param(["extend", "--model", "{root}/llama", "--method", "pi", "--target-length", "128",
                  "--out", "{root}/a-file/x"], "which is a file", id="extend-out-under-file"),
    pytest.param(["extend", "--model", "{root}/llama", "--method", "pi", "--target-length", "128",
                  "--out", "{root}/llama"], "not empty", id="extend-out-not-empty"),
    pytest.param(["extend", "--model", "{root}/truncated", "--method", "pi", "--target-length", "128",
                  "--out", "{out}"], "truncated", id="extend-truncated"),
    pytest.param(["extend", "--model", "{root}/badconfig", "--method", "pi", "--target-length", "128",
                  "--out", "{out}"], "config.json", id="extend-badconfig"),
    pytest.param(["extend", "--model", "{root}/noweights", "--method", "pi", "--target-length", "128",
                  "--out", "{out}"], "noweights", id="extend-noweights"),
    pytest.param(["extend", "--model", "{root}/llama", "--method", "bogus", "--target-length", "128",
                  "--out", "{out}"], "'bogus'", id="extend-method"),
    pytest.param(["extend", "--model", "{root}/gemma3", "--layer-type", "nope", "--method", "pi", "--target-length",
                  "128", "--out", "{out}"], "unknown layer_type 'nope'; allowed: full_attention, sliding_attention",
                 id="extend-layer-type"),
    # train: config files, plan files, output folder
    pytest.param(["train", "--config", "{root}/broken.yaml", "--output-dir", "{out}"], "broken.yaml' is not valid YAML",
                 id="train-broken-yaml"),
    pytest.param(["train", "--config", "{root}/bool.yaml", "--output-dir", "{out}"],
                 "bool.yaml: field global_batch must be an integer, got True", id="train-bool-field"),
    pytest.param(["train", "--config", "{root}/list.yaml", "--output-dir", "{out}"], "must hold a YAML mapping",
                 id="train-yaml-list"),
    pytest.param(["train", "--config", "{root}/missing.yaml", "--output-dir", "{out}"], "missing.yaml",
                 id="train-missing-yaml"),
    pytest.param(["train", "--config", TRAIN, "--output-dir", "{out}", "--set", "global_batch=true"],
                 "field global_batch must be an integer, got True", id="train-set-bool"),
    pytest.param(["train", "--config", TRAIN, "--output-dir", "{out}", "--set", "learning_rate=2e-5"],
                 "field learning_rate must be a number, got '2e-5'", id="train-set-string-float"),
    pytest.param(["train", "--config", TRAIN, "--output-dir", "{out}", "--set", "steps"], "KEY=VALUE",
                 id="train-set-no-value"),
    pytest.param(["train", "--config", TRAIN, "--output-dir", "{out}", "--plan", "{root}/bad.json"],
                 "plan file '{root}/bad.json' is not valid JSON", id="train-plan-bad-json"),
    pytest.param(["train", "--config", TRAIN, "--output-dir", "{out}", "--plan", "{root}/list.json"],
                 "list.json' must hold a JSON object", id="train-plan-list"),
    pytest.param(["train", "--config", TRAIN, "--output-dir", "{out}", "--plan", "{root}/other.json"],
                 "other.json' is not a ropelab plan", id="train-plan-not-a-plan"),
    pytest.param(["train", "--config", TRAIN, "--output-dir", "{root}/a-file"], "is a file, not a folder",
                 id="train-output-file"),
    pytest.param(["train", "--config", TRAIN, "--output-dir", "{root}/a-file/run"], "which is a file",
                 id="train-output-under-file"),
    # pretrain: validated before the tokenizer is trained
    pytest.param(["pretrain", "--set", "head_dim=63"], "head_dim must be even", id="pretrain-head-dim"),
    pytest.param(["pretrain", "--set", "layers=true"], "field layers must be an integer, got True",
                 id="pretrain-bool"),
    pytest.param(["pretrain", "--set", "train.steps=yes"], "field train.steps must be an integer",
                 id="pretrain-nested-bool"),
    pytest.param(["pretrain", "--config", "bogus"], "allowed: llama2-13b-16k", id="pretrain-profile"),
    # the long-range mix: shares, tasks, a window too short for a task -- all before the tokenizer is trained
    pytest.param(["pretrain", "--set", "mix={shares: {text: 0.5, copy: 0.4}}"], "mix.shares must sum to 1, got 0.9",
                 id="pretrain-mix-sum"),
    pytest.param(["pretrain", "--set", "mix={shares: {text: 0.5, sort: 0.5}}"], "unknown mix task 'sort'",
                 id="pretrain-mix-task"),
    pytest.param(["pretrain", "--set", "mix={shares: {text: 0.5, recall: 0.5}}", "--set", "window=32"],
                 "window 32 is too short for mix task 'recall'", id="pretrain-mix-window"),
    pytest.param(["train", "--config", TRAIN, "--output-dir", "{out}", "--set", "data.mix={shares: {copy: 1.5}}"],
                 "mix.shares['copy'] must be a number in [0, 1], got 1.5", id="train-mix-share"),
    pytest.param(["pretrain", "--config", "{root}/broken.yaml"], "broken.yaml' is not valid YAML",
                 id="pretrain-broken-yaml"),
    # notebooks
    pytest.param(["notebooks", "run", "--notebooks", "{root}/missing", "--figures", "{root}/figures",
                  "--outputs", "{out}"], "notebook folder '{root}/missing' does not exist", id="notebooks-missing"),
    pytest.param(["notebooks", "run", "--notebooks", "{root}/empty", "--figures", "{root}/figures",
                  "--outputs", "{out}"], "no NN_slug.ipynb notebooks", id="notebooks-empty"),
    pytest.param(["notebooks", "run", "--notebooks", "{root}/notebooks", "--figures", "{root}/figures",
                  "--outputs", "{out}", "--only", "99"], "'99'", id="notebooks-only"),
    pytest.param(["notebooks", "run", "--notebooks", "{root}/notebooks", "--figures", "{root}/figures",
                  "--outputs", "{out}", "--profile", "bogus"], "'bogus'", id="notebooks-profile"),
    pytest.param(["notebooks", "run", "--notebooks", "{root}/notebooks", "--figures", "{root}/figures",
                  "--outputs", "{root}/a-file"], "--outputs '{root}/a-file' is a file", id="notebooks-outputs"),
    pytest.param(["notebooks", "run", "--notebooks", "{root}/notebooks", "--figures", "{root}/a-file/figures",
                  "--outputs", "{out}"], "--figures", id="notebooks-figures"),
    pytest.param(["notebooks", "clean", "{root}/notebooks/01_broken.ipynb"], "01_broken.ipynb' is not a readable",
                 id="notebooks-clean-json"),
    pytest.param(["notebooks", "clean", "{root}/notebooks/02_schema.ipynb"], "02_schema.ipynb' is not a readable",
                 id="notebooks-clean-schema"),
    pytest.param(["notebooks", "clean", "{root}/notebooks/03_missing.ipynb"], "03_missing.ipynb",
                 id="notebooks-clean-missing"),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Models (good, weights-only, faulty) and files (broken YAML/JSON/notebooks) that every case reads."""
    from ropelab.runtime.models import random_model, word_tokenizer

    root = tmp_path_factory.mktemp("inputs")
    model, tokenizer = random_model("llama", original_length=64), word_tokenizer()
    model.save_pretrained(root / "llama")
    tokenizer.save_pretrained(root / "llama")
    model.save_pretrained(root / "llama-notok")
    random_model("gemma3", original_length=64).save_pretrained(root / "gemma3")
    for name in ("noweights", "truncated", "badconfig"):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    (root / "noweights" / "model.safetensors").unlink()
    weights = root / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:2000])
    (root / "badconfig" / "config.json").write_text('{"model_type": "llama",')
    (root / "text.txt").write_text(" ".join(f"w{3 + i % 100}" for i in range(400)))
    (root / "a-file").write_text("not a folder")
    (root / "rows.summary.csv").mkdir()
    (root / "broken.yaml").write_text("steps: [1, 2\n")
    (root / "bool.yaml").write_text("global_batch: true\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "bad.json").write_text('{"rope_theta": 10000,')
    (root / "list.json").write_text("[1, 2]")
    (root / "other.json").write_text(json.dumps({"method": "pi"}))
    (root / "empty").mkdir()
    (root / "notebooks").mkdir()
    (root / "notebooks" / "01_broken.ipynb").write_text("{not json")
    (root / "notebooks" / "02_schema.ipynb").write_text('{"a": 1}')
    (root / "figures").mkdir()
    (root / "figures" / "results.md").write_text("# Results\n| a | b | 1 |\n")
    (root / "figures" / "results.csv").write_text("notebook,key,value\na,b,1\n")
    return root


@pytest.fixture(autouse=True)
def quiet(tmp_path, monkeypatch):
    """No progress bars on stderr (only the error line is checked there), a private cache and working folder."""
    from transformers.utils import logging

    monkeypatch.setenv("ROPELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ROPELAB_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    logging.disable_progress_bar()
    yield
    logging.enable_progress_bar()


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("argv, message", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, message, root, tmp_path, capsys):
    out = tmp_path / "out"
    fill = {"{root}": str(root), "{out}": str(out)}
    for key, value in fill.items():
        argv = [a.replace(key, value) for a in argv]
        message = message.replace(key, value)
    before = snapshot(root)
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("ropelab: error: "), err
    assert message in lines[0]
    assert not out.exists() and snapshot(root) == before
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["cache"])  # nothing beside (no outputs/ in the cwd)
    if argv[0] == "notebooks" and argv[1] == "run":
        assert (root / "figures" / "results.md").read_text() == "# Results\n| a | b | 1 |\n"


def test_the_battery_is_broad():
    assert len(CASES) >= 60
    assert {c.values[0][0] for c in CASES} == {"eval", "plan", "extend", "train", "pretrain", "notebooks"}


def test_the_command_line_exits_2_without_a_traceback(root, tmp_path):
    argv = ["eval", "passkey", "--model", str(root / "llama"), "--lengths", "200.5", "--csv", str(tmp_path / "x.csv")]
    proc = subprocess.run([sys.executable, "-m", "ropelab.cli", *argv], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == 2
    assert proc.stderr.strip() == "ropelab: error: --lengths must be comma-separated integers, got '200.5'"
    assert "Traceback" not in proc.stderr and not (tmp_path / "x.csv").exists()


def test_extend_copies_a_tokenizer_when_there_is_one_and_goes_on_without(root, tmp_path, capsys):
    """A weights-only checkpoint (Mistral, whose tokenizer class cannot be built from nothing) is extended; the
    extended folder loads in stock transformers; with a tokenizer, it is copied."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ropelab.runtime.models import random_model

    random_model("mistral", original_length=64).save_pretrained(tmp_path / "mistral")
    argv = ["extend", "--method", "pi", "--target-length", "128"]
    assert main([*argv, "--model", str(tmp_path / "mistral"), "--out", str(tmp_path / "bare")]) == 0
    assert "no tokenizer" in capsys.readouterr().out
    assert not (tmp_path / "bare" / "tokenizer.json").exists() and (tmp_path / "bare" / "ropelab_plan.json").exists()
    extended = AutoModelForCausalLM.from_pretrained(tmp_path / "bare")
    assert extended.config.rope_parameters["rope_type"] == "linear"
    assert main([*argv, "--model", str(root / "llama"), "--out", str(tmp_path / "full")]) == 0
    assert "no tokenizer" not in capsys.readouterr().out
    assert AutoTokenizer.from_pretrained(tmp_path / "full")("w5 w6").input_ids == [5, 6]
