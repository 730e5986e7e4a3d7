"""ropelab.train: the chunked loss against transformers' own, the sampler, early config errors, the checkpoint
that stock transformers reloads, and an exact resume after a real SIGKILL."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ropelab import checkpoint as ckpt
from ropelab.cli import main as cli_main
from ropelab.config import save_config
from ropelab.train import (
    ChunkedCausalLM,
    DataConfig,
    TrainConfig,
    accumulation_steps,
    chunked_lm_loss,
    finetune,
    read_metrics,
    sample_indices,
)

ROOT = Path(__file__).resolve().parents[1]


def _random_llama(vocab: int = 97, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=1, num_key_value_heads=1, head_dim=32, max_position_embeddings=64,
                      tie_word_embeddings=False)
    return LlamaForCausalLM(cfg)


@pytest.mark.parametrize("chunk", [0, 7, 1024])
def test_chunked_loss_and_grads_match_transformers(chunk):
    model = _random_llama()
    ids = torch.randint(0, 97, (3, 40))  # (B, T)
    ref = model(input_ids=ids, labels=ids).loss
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    ours = ChunkedCausalLM(model, chunk)(ids)
    ours.backward()
    assert torch.allclose(ours, ref, atol=1e-6, rtol=1e-6)
    for name, param in model.named_parameters():
        assert torch.allclose(param.grad, ref_grads[name], atol=1e-6, rtol=1e-5), name


def test_chunked_loss_reductions_and_ignore_index():
    hidden, weight = torch.randn(2, 5, 4), torch.randn(11, 4)
    labels = torch.randint(0, 11, (2, 5))
    labels[0, :2] = -100
    per_token = chunked_lm_loss(hidden, weight, labels, 3, reduction="none")  # (2, 5)
    ref = torch.nn.functional.cross_entropy((hidden @ weight.T).reshape(-1, 11), labels.reshape(-1), reduction="none")
    assert per_token.shape == (2, 5) and torch.allclose(per_token.reshape(-1), ref, atol=1e-6)
    assert torch.allclose(chunked_lm_loss(hidden, weight, labels, 3), ref[labels.reshape(-1) != -100].mean())


def test_sampler_is_a_deterministic_permutation_split_over_ranks():
    cfg = TrainConfig(global_batch=8, micro_batch=2, seed=3)
    n_blocks, processes = 16, 2
    accum = accumulation_steps(cfg, processes)
    assert accum == 2
    epoch0 = [i for step in range(2) for rank in range(processes) for micro in range(accum)
              for i in sample_indices(step, micro, rank, n_blocks, cfg, processes)]
    assert sorted(epoch0) == list(range(n_blocks))  # one epoch = every block once
    again = [i for rank in range(processes) for micro in range(accum)
             for i in sample_indices(1, micro, rank, n_blocks, cfg, processes)]
    assert again == epoch0[8:]  # a resumed run at step 1 reads what the uninterrupted run read
    other_seed = TrainConfig(global_batch=8, micro_batch=2, seed=4)
    assert [sample_indices(0, 0, 0, n_blocks, other_seed, processes)] != [epoch0[:2]]


@pytest.mark.parametrize("args, field", [
    (["--set", "bogus=1"], "'bogus'"),
    (["--target-length", "64"], "target_length"),
    (["--set", "global_batch=5", "--set", "micro_batch=2"], "global_batch"),
    (["--set", "data.corpus=text:/no/such/folder"], "data.corpus"),
    (["--method", "nope"], "nope"),
])
def test_bad_configs_fail_before_any_work_with_one_line(args, field, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli_main(["train", "--config", "configs/train/tiny-quick-2x.yaml", "--method", "pi",
                     "--output-dir", str(out), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("ropelab: error:") and field in err and "\n" not in err
    assert not out.exists()


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """A micro LLaMA pre-trained at L = 32 on standard-library text (seconds)."""
    from ropelab.tiny import TinyConfig, pretrain

    cfg = TinyConfig(name="micro", corpus="stdlib", max_docs=30, vocab_size=300, layers=1, hidden=64, heads=1,
                     head_dim=64, intermediate=128, window=32,
                     train=TrainConfig(steps=6, global_batch=4, micro_batch=4, learning_rate=3e-3, warmup_steps=2,
                                       schedule="cosine", loss_chunk_tokens=0, trackers="none"))
    return pretrain(cfg, tmp_path_factory.mktemp("micro"), progress=False)


def _recipe(base: Path, out: Path) -> TrainConfig:
    return TrainConfig(model=str(base), method="yarn", target_length=64,
                       data=DataConfig(corpus="stdlib", max_docs=30, max_blocks=48), steps=6, global_batch=4,
                       micro_batch=2, learning_rate=1e-3, loss_chunk_tokens=24, checkpoint_every=2,
                       trackers="none", output_dir=str(out), seed=1)


@pytest.mark.slow
def test_resume_after_sigkill_is_bitwise_identical(base_model, tmp_path):
    from transformers import AutoModelForCausalLM

    from ropelab.hf import rope_parameters
    from ropelab.plan import RopePlan

    full = finetune(cfg=_recipe(base_model, tmp_path / "full"), progress=False)

    # the same run, killed (SIGKILL) after step 3: step 3 is lost, the checkpoint of step 2 survives
    cfg = _recipe(base_model, tmp_path / "killed")
    save_config(cfg, tmp_path / "killed.yaml")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/cpu.yaml"]
    done = subprocess.run([*launch, "-m", "ropelab.train", "--config", str(tmp_path / "killed.yaml"),
                           "--stop-after-steps", "3"], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode != 0 and "SIGKILL" in done.stderr, done.stderr[-2000:]  # the child died of SIGKILL
    killed = tmp_path / "killed"
    assert ckpt.latest_checkpoint(killed)[0] == 2 and not (killed / "model").exists()
    assert [r["step"] for r in read_metrics(killed)] == [1, 2, 3]
    (killed / "checkpoints" / ".tmp-step_0000004").mkdir()  # a save that crashed mid-write: ignored, cleaned

    resumed = finetune(cfg=cfg, resume=True, progress=False)
    assert not (killed / "checkpoints" / ".tmp-step_0000004").exists()
    assert read_metrics(resumed) == [{**r, "tokens_per_s": s["tokens_per_s"]}
                                     for r, s in zip(read_metrics(full), read_metrics(resumed))]
    csv_rows = [[{k: v for k, v in row.items() if k != "tokens_per_s"}
                 for row in csv.DictReader((run / "metrics.csv").read_text().splitlines())] for run in (full, resumed)]
    assert csv_rows[0] == csv_rows[1] and len(csv_rows[0]) == 6  # the CSV too, column for column
    a, b = load_file(full / "model" / "model.safetensors"), load_file(resumed / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    before = load_file(base_model / "model.safetensors")
    assert not torch.equal(before["lm_head.weight"], a["lm_head.weight"])  # it did train

    # the result is a stock transformers checkpoint with the plan in its config
    plan = RopePlan.load(full / "model" / "ropelab_plan.json")
    assert plan.method == "yarn" and plan.target_length == 64
    config = json.loads((full / "model" / "config.json").read_text())
    assert config["rope_parameters"] == json.loads(json.dumps(rope_parameters(plan)))
    model = AutoModelForCausalLM.from_pretrained(full / "model")
    inv_freq = model.model.rotary_emb.inv_freq.double().numpy()
    assert abs(inv_freq - plan.inv_freq).max() < 1e-6
    assert (full / "config.yaml").is_file() and (full / "metrics.csv").read_text().startswith("step,")


@pytest.mark.slow
def test_two_process_ddp_ends_with_the_weights_of_one_process(base_model, tmp_path):
    """DDP over two CPU processes (torchrun, gloo) reads the same global batches as one process with gradient
    accumulation and ends with the same weights; the run ends cleanly: the model is saved (a collective) before
    the trackers close and the process group goes (a GPU smoke run with tensorboard installed once saved after
    the process group was gone, and failed)."""
    cfg = dataclasses.replace(_recipe(base_model, tmp_path / "ddp"), steps=3, checkpoint_every=0, trackers="auto")
    save_config(cfg, tmp_path / "ddp.yaml")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "ropelab.train", "--config", str(tmp_path / "ddp.yaml")], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count(str(tmp_path / "ddp" / "model")) == 1  # one main process: one DDP run, not two
    one = finetune(cfg=dataclasses.replace(cfg, output_dir=str(tmp_path / "one")), progress=False)
    ddp = tmp_path / "ddp"
    assert [r["step"] for r in read_metrics(ddp)] == [1, 2, 3]
    for r, s in zip(read_metrics(ddp), read_metrics(one)):
        assert abs(r["loss"] - s["loss"]) < 1e-5
    a, b = load_file(ddp / "model" / "model.safetensors"), load_file(one / "model" / "model.safetensors")
    before = load_file(base_model / "model.safetensors")
    assert a.keys() == b.keys() and not torch.equal(a["lm_head.weight"], before["lm_head.weight"])
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_finished_run_is_reused_and_every_method_trains(base_model, tmp_path):
    from ropelab import METHODS

    runs = {}
    for method in ["none", "pi", "ntk", "yarn", "dprope", "llama3", "dynamic_ntk"]:
        assert method in METHODS
        cfg = TrainConfig(model=str(base_model), method=method, target_length=64,
                          data=DataConfig(corpus="stdlib", max_docs=30, max_blocks=16), steps=1, global_batch=2,
                          micro_batch=2, trackers="none")
        runs[method] = finetune(cfg=cfg, run_dir=tmp_path / method, progress=False)
        assert (runs[method] / "model" / "ropelab_plan.json").is_file()
    stamp = (runs["pi"] / "model" / "model.safetensors").stat().st_mtime_ns
    finetune(cfg=TrainConfig(model=str(base_model), method="pi", target_length=64,
                             data=DataConfig(corpus="stdlib", max_docs=30, max_blocks=16), steps=1, global_batch=2,
                             micro_batch=2, trackers="none"), run_dir=tmp_path / "pi", progress=False)
    assert (runs["pi"] / "model" / "model.safetensors").stat().st_mtime_ns == stamp
