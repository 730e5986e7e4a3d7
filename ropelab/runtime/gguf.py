"""Serve a plan with llama.cpp: write into a GGUF what llama.cpp's graph reads, and read back what it computes.

llama.cpp (source read: ``src/llama-model.cpp`` ``load_hparams`` / ``get_rope_factors``, ``src/models/llama.cpp``,
``src/models/phi3.cpp``, ``src/llama-context.cpp``, ``ggml/src/ggml-cpu/ops.cpp`` ``rope_yarn``) rotates pair i at
position p by ``p * base^(-2i/n_rot) / ff_i`` with per-pair divisors ``ff`` taken from a tensor, and scales cos/sin
by ``{arch}.rope.scaling.attn_factor``:

* ``llama`` (also Mistral and SmolLM2): with ``rope.scaling.type = longrope`` it reads ``rope_factors_long.weight``
  and ``rope_factors_short.weight`` and uses the long ones when the *context size* (``n_ctx``) exceeds
  ``rope.scaling.original_context_length``; with any other type it reads ``rope_freqs.weight`` (all positions);
* ``phi3``: always ``rope_factors_long.weight`` / ``rope_factors_short.weight``, switched the same way.

The official converter (``convert_hf_to_gguf.py``) writes neither for a Llama config with ``rope_type: longrope``
(it keeps the type and drops the factors: the unextended model). :func:`write_gguf` copies a converted GGUF and
replaces its RoPE: one factor set -> type ``none`` + ``rope_freqs.weight`` (every static plan: PI, YaRN, NTK,
DPRoPE are all per-pair divisors of the base frequencies); distinct short factors (LongRoPE) -> type ``longrope``
+ the long/short pair. The plan itself is stored under ``ropelab.rope.plan`` (llama.cpp ignores unknown keys).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ropelab.rope.plan import RopePlan
from ropelab.user_files import check_output_path

ARCHS = ("llama", "phi3")  # llama.cpp graphs that apply per-pair factor tensors to every layer
ROPE_FREQS = "rope_freqs.weight"  # llama.cpp's tensor names (tn(LLM_TENSOR_ROPE_FREQS, "weight"))
ROPE_FACTORS_LONG = "rope_factors_long.weight"
ROPE_FACTORS_SHORT = "rope_factors_short.weight"
ROPE_TENSORS = (ROPE_FREQS, ROPE_FACTORS_LONG, ROPE_FACTORS_SHORT)
PLAN_KEY = "ropelab.rope.plan"
SCALING_TYPES = ("none", "linear", "yarn", "longrope")  # llama.cpp's LLAMA_ROPE_SCALING_TYPES
CONVERTER_ENV = "ROPELAB_GGUF_CONVERTER"
# transformers classes whose llama.cpp converter output has an arch in ARCHS (conversion/__init__.py, llama.py,
# phi.py of the converter's version pinned in scripts/engines.sh)
GGUF_ARCH = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Phi3ForCausalLM": "phi3"}


def static_plan_check(plan: RopePlan, target: str) -> None:
    """Raise ValueError for plans whose frequencies depend on the sequence length (dynamic NTK)."""
    if plan.dynamic:
        raise ValueError(f"{plan.method} frequencies change with the sequence length; {target} needs a static plan")


def _short_factors(plan: RopePlan) -> tuple[float, ...]:
    return tuple(float(f) for f in plan.details.get("short_factors", plan.factors))


def check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"GGUF architecture {arch!r} has no per-pair RoPE factors in llama.cpp; allowed: "
                         f"{', '.join(ARCHS)}")


def gguf_arch(config: Any) -> str:
    """The llama.cpp architecture a transformers ``config`` converts to, if ropelab can write its RoPE there."""
    classes = list(getattr(config, "architectures", None) or [])
    for name in classes:
        if name in GGUF_ARCH:
            return GGUF_ARCH[name]
    raise ValueError(f"GGUF export covers {', '.join(GGUF_ARCH)} (llama.cpp graphs with per-pair RoPE factors); "
                     f"got {', '.join(classes) or 'no architectures in the config'}")


def gguf_rope_tensors(plan: RopePlan, arch: str = "llama") -> dict[str, np.ndarray]:
    """The factor tensors llama.cpp's ``arch`` graph reads for ``plan``: float32 arrays of shape (n_rot/2,)."""
    static_plan_check(plan, "GGUF")
    check_arch(arch)
    long = np.asarray(plan.factors, dtype=np.float32)  # (d/2,)
    short = np.asarray(_short_factors(plan), dtype=np.float32)  # (d/2,)
    if arch == "llama" and np.array_equal(long, short):
        return {ROPE_FREQS: long}
    return {ROPE_FACTORS_LONG: long, ROPE_FACTORS_SHORT: short}


def gguf_rope_metadata(plan: RopePlan, arch: str = "llama") -> dict[str, Any]:
    """The GGUF keys that go with :func:`gguf_rope_tensors` (every other ``{arch}.rope.scaling.*`` key is removed).

    ``rope.scaling.type`` is ``none`` for ``rope_freqs`` (llama.cpp then ignores any linear scale) and ``longrope``
    for the long/short pair, written without ``rope.scaling.factor`` (it would scale every position again).
    """
    tensors = gguf_rope_tensors(plan, arch)
    return {
        f"{arch}.context_length": int(plan.target_length),
        f"{arch}.rope.freq_base": float(plan.spec.theta),
        f"{arch}.rope.scaling.type": "none" if ROPE_FREQS in tensors else "longrope",
        f"{arch}.rope.scaling.original_context_length": int(plan.spec.original_length),
        f"{arch}.rope.scaling.attn_factor": float(plan.attention_factor),
        PLAN_KEY: plan.to_json(),
    }


# --- reading: what llama.cpp computes --------------------------------------------------------------------------


@dataclass(frozen=True)
class GgufRope:
    """A GGUF's RoPE as llama.cpp's loader reads it (defaults as in ``llama_model::load_hparams``).

    Attributes:
        arch: ``general.architecture``.
        n_rot: rotated dimensions (``rope.dimension_count``, else the head size).
        freq_base: ``rope.freq_base`` (10000 when absent).
        scaling_type: ``rope.scaling.type`` (``linear`` when absent, as llama.cpp).
        freq_scale: 1 / ``rope.scaling.factor`` (1 when absent or 0).
        attn_factor: ``rope.scaling.attn_factor`` (1 when absent).
        n_ctx_train: ``context_length``.
        n_ctx_orig: ``rope.scaling.original_context_length`` (``n_ctx_train`` when absent).
        factors: the factor tensors llama.cpp loads for this arch and type, by name (float64 (n_rot/2,)).
        plan: the ropelab plan stored in the file, if any.
    """

    arch: str
    n_rot: int
    freq_base: float
    scaling_type: str
    freq_scale: float
    attn_factor: float
    n_ctx_train: int
    n_ctx_orig: int
    factors: dict[str, np.ndarray]
    plan: RopePlan | None

    def frequencies(self, n_ctx: int) -> tuple[np.ndarray, float, str]:
        """``(inv_freq, attention, source)`` that llama.cpp uses for every position of a context of ``n_ctx``.

        ``source`` names the factor tensor used (or ``"none"``). YaRN as in ggml's ``rope_yarn`` with llama's
        default betas (32, 1) and ``ext_factor`` 1.
        """
        half = self.n_rot // 2
        base = self.freq_base ** (-2.0 * np.arange(half) / self.n_rot)  # (n_rot/2,)
        source = "none"
        if ROPE_FREQS in self.factors:
            source = ROPE_FREQS
        elif ROPE_FACTORS_LONG in self.factors:
            source = ROPE_FACTORS_LONG if n_ctx > self.n_ctx_orig else ROPE_FACTORS_SHORT
        divisors = self.factors.get(source, np.ones(half))
        extrapolated = base / divisors
        freq_scale = 1.0 if self.scaling_type == "none" else self.freq_scale
        attention = self.attn_factor
        if self.scaling_type != "yarn":
            return freq_scale * extrapolated, attention, source
        low, high = _yarn_corr_dims(self.n_rot, self.n_ctx_orig, self.freq_base, 32.0, 1.0)
        ramp = 1 - np.clip((np.arange(half) - low) / max(0.001, high - low), 0, 1)  # 1: keep the extrapolated
        inv_freq = freq_scale * extrapolated * (1 - ramp) + extrapolated * ramp
        # llama-context.cpp cancels get_mscale in yarn_attn_factor; rope_yarn multiplies it back in
        return inv_freq, attention * (1 + 0.1 * np.log(1 / freq_scale)), source


def _yarn_corr_dims(n_rot: int, n_ctx_orig: int, base: float, beta_fast: float, beta_slow: float) -> tuple[float, float]:
    """ggml_rope_yarn_corr_dims: the pair range over which YaRN ramps from extrapolation to interpolation."""
    def dim(beta: float) -> float:
        return n_rot * np.log(n_ctx_orig / (beta * 2 * np.pi)) / (2 * np.log(base))

    return max(0.0, float(np.floor(dim(beta_fast)))), min(n_rot - 1.0, float(np.ceil(dim(beta_slow))))


def read_gguf_rope(path: str | os.PathLike) -> GgufRope:
    """The RoPE llama.cpp reads from the GGUF at ``path`` (metadata and factor tensors; weights are not loaded).

    Raises:
        ValueError: not a GGUF file, or a scaling type llama.cpp rejects.
    """
    reader = _reader(path)
    arch = _field(reader, "general.architecture")

    def key(name: str, default: Any = None) -> Any:
        value = _field(reader, f"{arch}.{name}")
        return default if value is None else value

    n_heads = key("attention.head_count")
    n_heads = n_heads[0] if isinstance(n_heads, list) else n_heads
    head = key("attention.key_length") or (key("embedding_length") // n_heads if n_heads else None)
    n_rot = int(key("rope.dimension_count", head))
    scaling_type = key("rope.scaling.type", "linear")
    if scaling_type not in SCALING_TYPES:
        raise ValueError(f"{str(path)!r}: rope.scaling.type {scaling_type!r} is not one llama.cpp knows; allowed: "
                         f"{', '.join(SCALING_TYPES)}")
    factor = float(key("rope.scaling.factor", 0.0))
    n_ctx_train = int(key("context_length"))
    loaded = {ROPE_FACTORS_LONG, ROPE_FACTORS_SHORT} if arch == "phi3" or scaling_type == "longrope" else {ROPE_FREQS}
    factors = {t.name: np.asarray(t.data, dtype=np.float64).reshape(-1) for t in reader.tensors if t.name in loaded}
    for name, values in factors.items():
        if values.shape != (n_rot // 2,):
            raise ValueError(f"{str(path)!r}: tensor {name} has {values.size} values, llama.cpp needs n_rot/2 = "
                             f"{n_rot // 2}")
    plan_json = _field(reader, PLAN_KEY)
    return GgufRope(
        arch=arch, n_rot=n_rot, freq_base=float(key("rope.freq_base", 10000.0)), scaling_type=scaling_type,
        freq_scale=1.0 if factor == 0 else 1.0 / factor, attn_factor=float(key("rope.scaling.attn_factor", 1.0)),
        n_ctx_train=n_ctx_train, n_ctx_orig=int(key("rope.scaling.original_context_length", n_ctx_train)),
        factors=factors, plan=RopePlan.from_json(plan_json) if plan_json else None,
    )


def _reader(path: str | os.PathLike) -> Any:
    import gguf

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no GGUF file at {str(path)!r}")
    try:
        return gguf.GGUFReader(path)
    except (ValueError, OSError) as error:
        raise ValueError(f"{str(path)!r} is not a readable GGUF file ({error})") from None


def _field(reader: Any, name: str) -> Any:
    field = reader.get_field(name)
    return None if field is None else field.contents()


# --- writing --------------------------------------------------------------------------------------------------


def write_gguf(source: str | os.PathLike, plan: RopePlan, out: str | os.PathLike, force: bool = False) -> Path:
    """Copy the GGUF ``source`` to ``out`` with ``plan``'s RoPE (see the module docstring); atomic.

    Raises:
        ValueError: an architecture llama.cpp gives no per-pair factors, a dynamic plan, or a plan made for another
            RoPE (pair count or base).
        FileExistsError: ``out`` exists and ``force`` is False.
    """
    import gguf

    out = Path(out).expanduser().absolute()
    check_output(out, force)
    reader = _reader(source)
    rope = read_gguf_rope(source)
    check_arch(rope.arch)
    if rope.n_rot // 2 != plan.spec.n_pairs:
        raise ValueError(f"plan has {plan.spec.n_pairs} frequency pairs but {str(source)!r} rotates "
                         f"{rope.n_rot // 2} ({rope.arch}.rope.dimension_count {rope.n_rot})")
    bases = {float(plan.spec.theta), float(plan.details.get("base", plan.spec.theta))}  # NTK exports: the new one
    if not any(np.isclose(rope.freq_base, base, rtol=1e-6) for base in bases):
        raise ValueError(f"plan was made for RoPE base {plan.spec.theta} but {str(source)!r} has {rope.freq_base}")
    metadata = gguf_rope_metadata(plan, rope.arch)
    tensors = gguf_rope_tensors(plan, rope.arch)
    dropped = f"{rope.arch}.rope.scaling."
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}-", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(tmp, rope.arch, endianess=reader.endianess)
        for field in reader.fields.values():  # as gguf-py's gguf_new_metadata.py copies them
            if (field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF.")
                    or field.name in metadata or field.name.startswith(dropped)):
                continue
            kind = field.types[0]
            sub_type = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), kind, sub_type=sub_type)
        for name, value in metadata.items():
            writer.add_key_value(name, value, _value_type(value))
        kept = [t for t in reader.tensors if t.name not in ROPE_TENSORS]
        for name, values in tensors.items():
            writer.add_tensor_info(name, values.shape, values.dtype, values.nbytes, gguf.GGMLQuantizationType.F32)
        for tensor in kept:
            writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes,
                                   tensor.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for values in tensors.values():
            writer.write_tensor_data(values)
        for tensor in kept:
            writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
        writer.close()
        del reader
        tmp.chmod(0o666 & ~_umask())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _value_type(value: Any) -> Any:
    import gguf

    if isinstance(value, str):
        return gguf.GGUFValueType.STRING
    return gguf.GGUFValueType.UINT32 if isinstance(value, int) else gguf.GGUFValueType.FLOAT32


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output(out: Path, force: bool) -> None:
    """Raise unless ``out`` can be written: a ``.gguf`` path, absent unless ``force``."""
    if out.suffix != ".gguf":
        raise ValueError(f"GGUF output {str(out)!r} must end in .gguf")
    check_output_path(out, "GGUF output")
    if out.is_dir():
        raise FileExistsError(f"GGUF output {str(out)!r} is a folder")
    if out.exists() and not force:
        raise FileExistsError(f"GGUF output {str(out)!r} exists; pass force=True (--force) to replace it")


def find_converter(converter: str | os.PathLike | None = None) -> Path:
    """llama.cpp's ``convert_hf_to_gguf.py``: ``converter``, else ``$ROPELAB_GGUF_CONVERTER``, else the copy that
    ``scripts/engines.sh llama`` installs under ``$ROPELAB_CACHE/engines``."""
    from ropelab.storage import cache_path

    given = converter or os.environ.get(CONVERTER_ENV)
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise ValueError(f"no llama.cpp converter at {str(path)!r} (convert_hf_to_gguf.py)")
        return path
    found = sorted(cache_path("engines").glob("llama-cpp-python-*/llama.cpp/convert_hf_to_gguf.py"))
    if not found:
        raise ValueError(f"no llama.cpp converter found: pass its convert_hf_to_gguf.py (--gguf-converter or "
                         f"${CONVERTER_ENV}), or run scripts/engines.sh llama")
    return found[-1]


def _converter_env(script: Path) -> dict[str, str]:
    """The environment for the converter: with ``site/`` beside its folder first on the path, where
    ``scripts/engines.sh`` installs what it imports beyond ropelab's own dependencies (sentencepiece)."""
    env = dict(os.environ)
    site = script.parent.parent / "site"
    if site.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    return env


def run_converter(folder: str | os.PathLike, out: str | os.PathLike, converter: str | os.PathLike | None = None,
                  outtype: str = "f32") -> Path:
    """Run llama.cpp's own converter on an HF folder, writing the GGUF ``out`` as it makes it (no plan added).

    Raises:
        ValueError: no converter (see :func:`find_converter`), an output type other than f32/f16/bf16/q8_0, or
            the converter failed on the folder (its last lines are in the message).
    """
    if outtype not in ("f32", "f16", "bf16", "q8_0"):
        raise ValueError(f"outtype must be one of f32, f16, bf16, q8_0; got {outtype!r}")
    script = find_converter(converter)
    out = Path(out)
    proc = subprocess.run([sys.executable, str(script), str(folder), "--outfile", str(out), "--outtype", outtype],
                          capture_output=True, text=True, check=False, env=_converter_env(script))
    if proc.returncode != 0 or not out.is_file():
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise ValueError(f"llama.cpp's converter failed on {str(folder)!r}: {tail}")
    return out


def convert_checkpoint(folder: str | os.PathLike, plan: RopePlan, out: str | os.PathLike,
                       converter: str | os.PathLike | None = None, outtype: str = "f32", force: bool = False) -> Path:
    """Convert an exported HF folder with llama.cpp's own converter (:func:`run_converter`), then
    :func:`write_gguf` the plan into it; nothing is left at ``out`` if either step fails."""
    out = Path(out).expanduser().absolute()
    check_output(out, force)
    static_plan_check(plan, "GGUF")
    find_converter(converter)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        raw = run_converter(folder, Path(tmp) / "converted.gguf", converter, outtype)
        return write_gguf(raw, plan, out, force=force)
