"""Every YAML in configs/train and configs/accelerate loads (ropelab's loader, accelerate's own), the paper's
recipes say what the paper says, and accelerate's refusals on this CPU-only machine are the expected ones."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ropelab.config import load_config
from ropelab.experiments.tiny import TinyConfig, resolve_spec
from ropelab.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
TRAIN = sorted((ROOT / "configs" / "train").glob("*.yaml"))
ACCELERATE = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", TRAIN, ids=[p.stem for p in TRAIN])
def test_train_configs_load(path):
    if path.stem.startswith("pretrain-"):
        cfg = load_config(TinyConfig, path)
        assert cfg.head_dim == 64 and cfg.rope_theta == 10000.0
        assert cfg.train.global_batch % cfg.train.micro_batch == 0
        return
    cfg = load_config(TrainConfig, path)
    assert cfg.global_batch % cfg.micro_batch == 0
    if cfg.model.startswith("tiny:"):
        spec = resolve_spec(cfg.model)
        assert cfg.target_length in (2 * spec.original_length, 4 * spec.original_length)
        assert cfg.schedule == "constant" and cfg.warmup_steps == 0 and cfg.weight_decay == 0.0


@pytest.mark.parametrize("name, target, steps", [("llama2-7b-8k", 8192, 1000), ("llama2-7b-16k", 16384, 500),
                                                 ("llama2-13b-8k", 8192, 1000), ("llama2-13b-16k", 16384, 500)])
def test_paper_recipes(name, target, steps):
    cfg = load_config(TrainConfig, ROOT / "configs" / "train" / f"{name}.yaml")
    assert (cfg.target_length, cfg.steps, cfg.global_batch, cfg.learning_rate) == (target, steps, 64, 2e-5)
    assert cfg.betas == (0.9, 0.999) and cfg.weight_decay == 0.0 and cfg.warmup_steps == 0
    assert cfg.schedule == "constant" and cfg.mixed_precision == "bf16" and cfg.method == "dprope"
    assert cfg.method_options["n_hat"] == (80 if target == 8192 else 64)  # the paper's n_hat


EXPECTED = {"cpu": "NO", "gpu": "NO", "multi-gpu": "MULTI_GPU", "fsdp": "FSDP", "deepspeed-zero3": "DEEPSPEED"}


@pytest.mark.parametrize("path", ACCELERATE, ids=[p.stem for p in ACCELERATE])
def test_accelerate_configs_parse_with_accelerate(path):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(path))
    assert str(cfg.distributed_type).split(".")[-1] == EXPECTED[path.stem]
    if path.stem == "fsdp":
        assert cfg.fsdp_config["fsdp_sharding_strategy"] == "FULL_SHARD"
        assert cfg.fsdp_config["fsdp_activation_checkpointing"] is True
    if path.stem == "deepspeed-zero3":
        assert cfg.deepspeed_config["zero_stage"] == 3


def _launch(config: str, *extra: str, timeout: int = 180) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "configs" / "accelerate" / config), *extra, "-m", "ropelab.train", "--config",
               "configs/train/tiny-quick-2x.yaml", "--set", "steps=1"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.slow
@pytest.mark.skipif(_has_gpu(), reason="checks the refusal on machines without an accelerator")
def test_fsdp_is_refused_on_cpu_with_accelerates_own_message():
    """FSDP needs a CUDA/XPU/... device: on CPU accelerate stops it before a training step, with its own message
    (accelerate <= 1.15: the launcher finds no device; 1.16: FSDP refuses to initialise parameters on cpu)."""
    done = _launch("fsdp.yaml", "--num_processes", "1")
    assert done.returncode != 0
    said = ("no available devices found, must be one of", "is not supported on cpu")
    assert any(s in done.stderr for s in said), done.stderr[-2000:]


@pytest.mark.slow
def test_deepspeed_is_refused_when_not_installed():
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed")
    done = _launch("deepspeed-zero3.yaml", "--num_processes", "1")
    assert done.returncode != 0 and "DeepSpeed is not installed" in done.stderr


@dataclasses.dataclass(frozen=True)
class _Inner:
    lengths: tuple = ()
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class _Outer:
    name: str = ""
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    plans: dict = dataclasses.field(default_factory=dict)


def _write(folder, name, text):
    (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return folder / f"{name}.yaml"


def test_a_profile_extends_another_merging_mappings_and_replacing_lists_and_scalars(tmp_path):
    _write(tmp_path, "base", "name: base\ninner: {lengths: [1, 2], seed: 3}\n")  # no plans: mid brings them
    _write(tmp_path, "mid", "extends: base\nname: mid\ninner: {lengths: [4]}\nplans: {b: 5}\n")
    child = _write(tmp_path, "child", "extends: mid.yaml\ninner: {seed: 7}\nplans: {a: 1}\n")
    cfg = load_config(_Outer, child)
    assert cfg == _Outer(name="mid", inner=_Inner(lengths=[4], seed=7), plans={"a": 1, "b": 5})
    assert load_config(_Outer, tmp_path / "mid.yaml").inner == _Inner(lengths=[4], seed=3)
    assert load_config(_Outer, child, {"inner.seed": 9}).inner.seed == 9  # overrides apply after the merge


@pytest.mark.parametrize("text, message", [
    ("extends: nowhere\n", r"extends 'nowhere', which is not a profile in .*; allowed: a, b or a .yaml path"),
    ("extends: 3\n", r"extends must be a profile name or a .yaml path, got 3"),
    ("extends: b\n", r"b.yaml: extends 'a', which extends it back: a.yaml -> b.yaml -> a.yaml"),
])
def test_a_bad_extends_is_one_line_naming_it(tmp_path, text, message):
    a = _write(tmp_path, "a", text)
    _write(tmp_path, "b", "extends: a\n")
    with pytest.raises(ValueError, match=message) as err:
        load_config(_Outer, a)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)  # the file it is in
