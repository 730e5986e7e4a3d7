"""ropelab.train: the chunked loss against transformers' own, the sampler, early config errors, the checkpoint
that stock transformers reloads, and an exact resume after a real SIGKILL."""

from __future__ import annotations

import ast
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
from ropelab.train import checkpoint as ckpt

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


def test_loss_mask_scores_only_the_masked_tokens_as_transformers_does_with_ignored_labels():
    model = _random_llama()
    ids = torch.randint(0, 97, (3, 40))  # (B, T)
    mask = torch.zeros(3, 40, dtype=torch.bool)
    mask[0] = True  # a text row: every token
    mask[1, 30:] = True  # a copy row: its answers
    mask[2, 5] = True
    labels = ids.masked_fill(~mask, -100)
    ref = model(input_ids=ids, labels=labels).loss  # transformers shifts labels: token t+1 scored from t
    ours = ChunkedCausalLM(model, 0)(ids, loss_mask=mask)
    assert torch.allclose(ours, ref, atol=1e-6, rtol=1e-6)
    every = ChunkedCausalLM(model, 0)(ids, reduction="none")  # (B, T - 1)
    masked = ChunkedCausalLM(model, 0)(ids, reduction="none", loss_mask=mask)
    assert torch.equal(masked[~mask[:, 1:]], torch.zeros(int((~mask[:, 1:]).sum())))
    assert torch.allclose(masked[mask[:, 1:]], every[mask[:, 1:]])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_torch_linear_cross_entropy_path_equals_the_plain_loss(reduction):
    """Several chunks in float32 go through F.linear_cross_entropy: the numbers and gradients of one plain chunk."""
    hidden = torch.randn(2, 50, 16, dtype=torch.float32, requires_grad=True)  # (B, T, H)
    weight = torch.randn(300, 16, requires_grad=True)  # (V, H)
    labels = torch.randint(0, 300, (2, 50))
    labels[1, :7] = -100
    grads = []
    for chunk in (0, 13):  # 0: one plain chunk (full logits); 13: the torch op, 8 chunks
        loss = chunked_lm_loss(hidden, weight, labels, chunk, reduction)
        (loss * torch.linspace(0.5, 2, loss.numel()).reshape(loss.shape)).sum().backward()
        grads.append((loss.detach(), hidden.grad.clone(), weight.grad.clone()))
        hidden.grad = weight.grad = None
    for plain, chunked in zip(*grads):
        torch.testing.assert_close(chunked, plain, rtol=1e-5, atol=1e-6)


def test_under_autocast_the_loss_keeps_bf16_logits_as_transformers():
    hidden, weight = torch.randn(2, 50, 16), torch.randn(300, 16)
    labels = torch.randint(0, 300, (2, 50))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = chunked_lm_loss(hidden, weight, labels, 13)
        ref = torch.nn.functional.cross_entropy(torch.nn.functional.linear(hidden, weight).float().reshape(-1, 300),
                                                labels.reshape(-1))
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    assert abs(float(ours) - float(chunked_lm_loss(hidden, weight, labels, 13))) > 1e-4  # not the float32 op


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


def test_sampler_reshuffles_every_epoch_and_covers_each_epoch_once():
    cfg = TrainConfig(global_batch=4, micro_batch=2, seed=0)
    n_blocks, processes = 12, 2  # 3 steps per epoch
    accum = accumulation_steps(cfg, processes)
    order = [i for step in range(15) for rank in range(processes) for micro in range(accum)
             for i in sample_indices(step, micro, rank, n_blocks, cfg, processes)]
    epochs = [tuple(order[e * n_blocks:(e + 1) * n_blocks]) for e in range(5)]
    assert all(sorted(e) == list(range(n_blocks)) for e in epochs)  # each epoch reads every block once
    assert len(set(epochs)) == 5  # and in a new order each time
    assert epochs[0] != tuple(range(n_blocks))  # shuffled, not read in storage order
    # a batch straddling the epoch boundary: the last samples of epoch 0, then the first of epoch 1
    odd = TrainConfig(global_batch=5, micro_batch=5, seed=0)
    assert sample_indices(2, 0, 0, 12, odd, 1) == [*order_of(odd, 12, 0)[10:], *order_of(odd, 12, 1)[:3]]


def order_of(cfg: TrainConfig, n_blocks: int, epoch: int) -> list[int]:
    """The seeded permutation of one epoch, as the sampler documents it."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    return torch.randperm(n_blocks, generator=gen).tolist()


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


@pytest.mark.parametrize("changes, message", [
    ({"global_batch": True}, "global_batch must be a positive integer, got True"),  # YAML `true` is not batch 1
    ({"micro_batch": False}, "micro_batch must be a positive integer, got False"),
    ({"steps": 2.0}, "steps must be a positive integer, got 2.0"),
    ({"log_every": 0}, "log_every must be a positive integer, got 0"),
    ({"checkpoint_every": True}, "checkpoint_every must be an integer >= 0, got True"),
    ({"loss_chunk_tokens": -1}, "loss_chunk_tokens must be an integer >= 0, got -1"),
    ({"learning_rate": True}, "learning_rate must be a number > 0, got True"),
    ({"max_grad_norm": -1.0}, "max_grad_norm must be a number >= 0, got -1.0"),
    ({"betas": [0.9, True]}, r"betas must be two numbers in \[0, 1\), got \[0.9, True\]"),
    ({"data": {"max_blocks": True}}, "data.max_blocks must be a positive integer or null, got True"),
])
def test_train_config_refuses_bools_and_out_of_range_numbers(changes, message):
    from ropelab.config import load_config

    assert load_config(TrainConfig, {"global_batch": 4}).global_batch == 4  # input sanity: the loader works
    # the loader refuses a wrong type itself ("field X must be an integer"), the dataclass a wrong range: either
    # way one line naming the field and the value
    field, value = message.split(" must")[0].split(".")[-1], message.split("got ")[1]
    with pytest.raises(ValueError, match=rf"{field} must .*got {value}") as err:
        load_config(TrainConfig, changes)
    assert "\n" not in str(err.value)
    if "data" not in changes:
        with pytest.raises(ValueError, match=message):
            TrainConfig(**changes)  # the dataclass itself refuses, whatever loader built it


def test_library_imports_no_command_layer_and_module_entry_is_the_train_command():
    probe = ("import sys, ropelab.train, ropelab.experiments.tiny; "
             "print(sorted(m for m in sys.modules if m.startswith(('ropelab.cli', 'ropelab.commands'))))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    imported = set()  # the train package never names tiny or the command layer, even in a function body
    for path in sorted((ROOT / "ropelab" / "train").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add((path.name, node.module))
            elif isinstance(node, ast.Import):
                imported.update((path.name, alias.name) for alias in node.names)
    assert ("loop.py", "ropelab.train.sampler") in imported  # input sanity: the walk sees imports
    assert {(f, m) for f, m in imported if m.startswith(("ropelab.experiments.tiny", "ropelab.cli", "ropelab.commands"))} == {
        ("__main__.py", "ropelab.cli")}  # the entry script only
    usage = subprocess.run([sys.executable, "-m", "ropelab.train", "--help"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout
    assert usage.startswith("usage: ropelab train") and "--resume [{latest,latest-intact}]" in usage


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """A micro LLaMA pre-trained at L = 32 on standard-library text (seconds)."""
    from ropelab.experiments.tiny import TinyConfig, pretrain

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


def _short(base: Path, out: Path, **changes) -> TrainConfig:
    """A few steps of 2 rows x 64 tokens on the micro model (about a second per run)."""
    return dataclasses.replace(_recipe(base, out), **{"global_batch": 2, "steps": 6, **changes})


def _same_run(a: Path, b: Path) -> None:
    """Two runs logged the same rows (but their speed) and ended with bitwise the same weights."""
    assert [{**r, "tokens_per_s": 0} for r in read_metrics(a)] == [{**r, "tokens_per_s": 0} for r in read_metrics(b)]
    wa, wb = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_continues_at_the_next_step_exactly(base_model, tmp_path):
    """A run stopped after step 2 and resumed to 6 reads the batches of steps 3..6 and ends bitwise equal to an
    uninterrupted run (the SIGKILL test below is the same through a real crash, slow)."""
    full = finetune(cfg=_short(base_model, tmp_path / "full"), progress=False)
    part = tmp_path / "part"
    finetune(cfg=_short(base_model, part, steps=2), progress=False)
    assert ckpt.latest_checkpoint(part)[0] == 2 and [r["step"] for r in read_metrics(part)] == [1, 2]
    finetune(cfg=_short(base_model, part), resume=True, progress=False)
    assert [r["step"] for r in read_metrics(part)] == [1, 2, 3, 4, 5, 6]
    _same_run(full, part)
    before = load_file(base_model / "model.safetensors")
    assert not torch.equal(before["lm_head.weight"], load_file(part / "model" / "model.safetensors")["lm_head.weight"])


def test_logged_loss_is_the_mean_over_the_accumulated_micro_batches(base_model, tmp_path):
    """Step 1's logged loss is the model's own loss on the rows the sampler gives step 1, averaged over the two
    micro batches (no update happens between them), and the logged learning rate is the recipe's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ropelab.runtime.hf import apply_plan
    from ropelab.train import make_run_plan, training_blocks

    cfg = _short(base_model, tmp_path / "run", steps=1, micro_batch=1)
    run = finetune(cfg=cfg, progress=False)
    model = apply_plan(AutoModelForCausalLM.from_pretrained(base_model), make_run_plan(cfg)).eval()
    blocks, _ = training_blocks(AutoTokenizer.from_pretrained(base_model), cfg.data, cfg.target_length)
    with torch.no_grad():
        losses = [float(model(input_ids=blocks[sample_indices(0, m, 0, len(blocks), cfg, 1)],
                              labels=blocks[sample_indices(0, m, 0, len(blocks), cfg, 1)]).loss) for m in (0, 1)]
    (row,) = read_metrics(run)
    assert abs(losses[0] - losses[1]) > 1e-3  # input sanity: the two micro batches differ
    assert row["loss"] == pytest.approx(sum(losses) / 2, rel=1e-5) and row["lr"] == cfg.learning_rate
    assert row["tokens"] == 2 * 64


def test_a_mix_with_loss_on_answers_trains_on_text_rows_and_answers_only(base_model, tmp_path):
    """With ``mix.loss_on: answers`` the logged loss of step 1 is the model's loss over exactly the tokens
    ``loss_mask`` keeps (text rows whole, repeat rows on their answers): the mask reaches the loop."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ropelab.runtime.hf import apply_plan
    from ropelab.train import make_run_plan, training_blocks
    from ropelab.train.mixture import MixConfig

    mix = MixConfig(shares={"text": 0.5, "repeat": 0.5}, loss_on="answers")
    cfg = _short(base_model, tmp_path / "run", steps=1, micro_batch=1,
                 data=DataConfig(corpus="stdlib", max_docs=30, mix=mix))
    run = finetune(cfg=cfg, progress=False)
    model = apply_plan(AutoModelForCausalLM.from_pretrained(base_model), make_run_plan(cfg)).eval()
    blocks, mask = training_blocks(AutoTokenizer.from_pretrained(base_model), cfg.data, cfg.target_length, rows=2)
    assert mask is not None and not mask.all() and mask.all(dim=1).any()  # input sanity: one text row, one not
    losses = []
    with torch.no_grad():
        for micro in (0, 1):
            idx = sample_indices(0, micro, 0, len(blocks), cfg, 1)
            labels = blocks[idx].masked_fill(~mask[idx], -100)
            losses.append(float(model(input_ids=blocks[idx], labels=labels).loss))
    (row,) = read_metrics(run)
    assert row["loss"] == pytest.approx(sum(losses) / 2, rel=1e-5)


def test_learning_rate_schedule_by_hand():
    from ropelab.train.loop import _lr_lambda

    factor = _lr_lambda(TrainConfig(steps=14, warmup_steps=4, schedule="cosine"))
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]  # linear warm-up reaches 1 at its last step
    assert factor(4) == 1.0 and factor(9) == pytest.approx(0.1 + 0.9 * 0.5) and factor(14) == pytest.approx(0.1)
    assert _lr_lambda(TrainConfig(steps=14))(13) == 1.0  # the paper's constant rate


def test_resume_without_a_checkpoint_is_refused_naming_the_folder(base_model, tmp_path, capsys):
    typo = tmp_path / "runn"
    code = cli_main(["train", "--config", "configs/train/tiny-quick-2x.yaml", "--model", str(base_model),
                     "--set", "data.corpus=stdlib", "--output-dir", str(typo), "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and f"no checkpoint in {typo / 'checkpoints'}" in err, err
    assert not typo.exists()  # nothing written, no tiny model pre-trained, no training from step 0
    with pytest.raises(ValueError, match="no checkpoint in"):
        finetune(cfg=_short(base_model, typo), resume=True, progress=False)
    assert not typo.exists()


def test_damaged_checkpoint_is_named_and_fallback_is_explicit(base_model, tmp_path, capsys):
    run = tmp_path / "run"
    cfg = _short(base_model, run, steps=4, checkpoint_every=1, keep_checkpoints=3)
    finetune(cfg=cfg, progress=False)
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [2, 3, 4]
    newest = run / "checkpoints" / "step_0000004"
    weights = newest / "model.safetensors"
    with weights.open("r+b") as fh:  # truncated: a full disk, an interrupted copy
        fh.truncate(weights.stat().st_size // 2)
    saved = {name: (run / name).read_bytes() for name in ("config.yaml", "plan.json", "metrics.jsonl")}
    save_config(dataclasses.replace(cfg, steps=6), tmp_path / "more.yaml")
    capsys.readouterr()

    code = cli_main(["train", "--config", str(tmp_path / "more.yaml"), "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and str(newest) in err and "model.safetensors" in err, err
    assert "latest-intact" in err and "step_0000003" in err  # how to fall back, and to what
    with pytest.raises(ValueError, match="step_0000004 is damaged"):
        finetune(cfg=dataclasses.replace(cfg, steps=6), resume=True, progress=False)
    assert {name: (run / name).read_bytes() for name in saved} == saved  # nothing rewritten
    assert weights.is_file()

    # only when asked: the newest intact checkpoint (step 3); the damaged one is kept aside, not deleted
    finetune(cfg=dataclasses.replace(cfg, steps=6), resume="latest-intact", progress=False)
    assert (run / "checkpoints" / "step_0000004.damaged" / "model.safetensors").is_file()
    full = finetune(cfg=_short(base_model, tmp_path / "full"), progress=False)
    _same_run(full, run)


def test_checkpoint_problems_are_found_without_loading(base_model, tmp_path):
    run = finetune(cfg=_short(base_model, tmp_path / "run", steps=2, checkpoint_every=1), progress=False)
    (one, first), (two, second) = ckpt.list_checkpoints(run)
    assert (one, two) == (1, 2) and ckpt.checkpoint_problem(first) is None
    state = json.loads((second / ckpt.STATE_FILE).read_text())
    assert state["step"] == 2 and {"model.safetensors", "optimizer.bin"} <= set(state["files"])
    optimizer = second / "optimizer.bin"  # not safetensors: only the recorded size tells
    size = optimizer.stat().st_size
    with optimizer.open("r+b") as fh:
        fh.truncate(size - 1)
    assert ckpt.checkpoint_problem(second) == f"optimizer.bin has {size - 1} bytes, {size} were written"
    assert ckpt.resume_point(run, "latest-intact") == (1, first)
    (first / "random_states_0.pkl").unlink()
    assert ckpt.checkpoint_problem(first) == "random_states_0.pkl is missing"
    with pytest.raises(ValueError, match="no older checkpoint .* is intact"):
        ckpt.resume_point(run, "latest-intact")
    with pytest.raises(ValueError, match="resume must be one of latest, latest-intact, got 'newest'"):
        ckpt.resume_point(run, "newest")


@pytest.mark.slow
def test_resume_after_sigkill_is_bitwise_identical(base_model, tmp_path):
    from transformers import AutoModelForCausalLM

    from ropelab.rope.plan import RopePlan
    from ropelab.runtime.hf import rope_parameters

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


def test_a_retrained_model_replaces_its_folder_whole_and_a_failed_save_keeps_the_old_one(base_model, tmp_path,
                                                                                         monkeypatch):
    """save_model publishes the model folder by one rename (storage.atomic_folder): a reader in another process
    (two notebooks on one cache) never sees half a model, and a save that fails loses nothing."""
    import transformers

    run = finetune(cfg=_short(base_model, tmp_path / "run", steps=1), progress=False)
    model_dir = run / "model"
    (model_dir / "stray.txt").write_text("left by an older run\n")
    finetune(cfg=_short(base_model, run, steps=1), force=True, progress=False)
    assert not (model_dir / "stray.txt").exists() and (model_dir / "ropelab_run.json").is_file()
    stamp = (model_dir / "model.safetensors").stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(transformers.PreTrainedTokenizerBase, "save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        finetune(cfg=_short(base_model, run, steps=1), force=True, progress=False)
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == stamp and (model_dir / "ropelab_run.json").is_file()
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no temporary folder left
