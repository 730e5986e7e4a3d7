"""``ropelab extend`` end to end on a tiny model folder."""

import hashlib

import numpy as np
import pytest
from transformers import AutoConfig

from ropelab.cli import main
from ropelab.rope.plan import RopePlan
from ropelab.runtime.models import random_model, word_tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    random_model("llama", original_length=64).save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return folder


def extend(model_dir, out, *extra):
    return main(["extend", "--model", str(model_dir), "--method", "dprope", "--target-length", "256", "--bins", "36",
                 "--out", str(out), *extra])


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_extend_writes_a_checkpoint_with_its_plan_and_is_deterministic(model_dir, tmp_path, capsys):
    assert extend(model_dir, tmp_path / "a") == 0
    assert "dprope: 64 -> 256 tokens" in capsys.readouterr().out
    files = digest(tmp_path / "a")
    assert {"config.json", "model.safetensors", "tokenizer.json", "ropelab_plan.json"} <= set(files)
    plan = RopePlan.load(tmp_path / "a" / "ropelab_plan.json")
    assert (plan.method, plan.target_length, plan.spec.original_length, plan.bins) == ("dprope", 256, 64, 36)
    rope = AutoConfig.from_pretrained(tmp_path / "a").rope_parameters
    assert rope["rope_type"] == "longrope" and rope["original_max_position_embeddings"] == 64
    np.testing.assert_array_equal(rope["long_factor"], plan.factors)
    assert extend(model_dir, tmp_path / "b") == 0
    assert digest(tmp_path / "b") == files  # same input, byte-identical output


def test_extend_refuses_a_non_empty_output_unless_forced(model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    assert extend(model_dir, out) == 2
    assert "is not empty; pass --force" in capsys.readouterr().err
    assert (out / "notes.txt").exists()
    assert extend(model_dir, out, "--force") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(digest(out)) and not (out / "notes.txt").exists()


@pytest.mark.parametrize("args,message", [
    (["--model", "/no/such/folder"], "model folder '/no/such/folder' does not exist"),
    (["--method", "magic"], "unknown method 'magic'"),
    (["--target-length", "32"], "target_length must be above the original length 64"),
])
def test_extend_bad_input_is_one_line(model_dir, tmp_path, capsys, args, message):
    argv = {"--model": str(model_dir), "--method": "dprope", "--target-length": "256"}
    argv.update(zip(args[::2], args[1::2]))
    code = main(["extend", *[x for kv in argv.items() for x in kv], "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("ropelab: error: ") and message in err.strip().splitlines()[-1]
    assert not (tmp_path / "o").exists()
