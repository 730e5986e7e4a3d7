"""The RoPE of a model, described without its weights.

References:
    Su et al., "RoFormer" (2021): theta_i = base^(-2i/d) for pairs i = 0 .. d/2-1.
    Liu et al., "Scaling Laws of RoPE-based Extrapolation" (2023): the critical dimension.
    Barbero et al., "Round and Round We Go! What makes Rotary Positional Encodings useful?" (ICLR 2025): p-RoPE,
    transformers' ``proportional`` type (Gemma 4): theta_i = base^(-2i/head_dim) for the first
    floor(p * head_dim / 2) pairs and 0 (no rotation) for the rest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ropelab.rope.elementary import power

PRECISIONS = ("exact", "float32")
DEFAULT_LAYER_TYPE = "full_attention"  # what a per-layer-type model's extension is for by default (the CLI's)

# Written down from each model's published config.json (hidden_size / num_attention_heads gives head_dim).
PRESETS: dict[str, dict[str, Any]] = {
    "llama2-7b": {"theta": 10000.0, "head_dim": 128, "original_length": 4096},
    "llama2-13b": {"theta": 10000.0, "head_dim": 128, "original_length": 4096},
    "llama3-8b": {"theta": 500000.0, "head_dim": 128, "original_length": 8192},
    "mistral-7b": {"theta": 10000.0, "head_dim": 128, "original_length": 32768},  # v0.1; sliding window 4096
    "qwen2.5-7b": {"theta": 1000000.0, "head_dim": 128, "original_length": 32768},
    "phi-3-mini": {"theta": 10000.0, "head_dim": 96, "original_length": 4096},
    "gemma-2b": {"theta": 10000.0, "head_dim": 256, "original_length": 8192},
    "smollm2-135m": {"theta": 100000.0, "head_dim": 64, "original_length": 8192},
}


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is a positive int, else raise a one-line ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class RopeSpec:
    """Rotary embedding of one attention head, as pre-trained.

    Attributes:
        theta: RoPE base (``rope_theta``); LLaMA2 uses 10000.
        head_dim: size d of one attention head.
        original_length: pre-training window L.
        partial_rotary_factor: fraction p of the head that is rotated (1.0 = all of it).
        proportional: p-RoPE (transformers' ``proportional``): every one of the head_dim/2 pairs is a pair, with
            exponents over head_dim; the first floor(p * head_dim / 2) rotate, the rest have frequency 0. False:
            the usual partial rotary, int(p * head_dim) channels rotated with exponents over that.
        layer_type: the layer type this RoPE belongs to, for configs whose RoPE differs per layer type (Gemma 3:
            ``full_attention`` / ``sliding_attention``); None: every layer.
    """

    theta: float
    head_dim: int
    original_length: int
    partial_rotary_factor: float = 1.0
    proportional: bool = False
    layer_type: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.theta, (int, float)) or not math.isfinite(self.theta) or self.theta <= 1:
            raise ValueError(f"theta must be a finite number above 1, got {self.theta!r}")
        check_positive_int("head_dim", self.head_dim)
        check_positive_int("original_length", self.original_length)
        if not 0 < self.partial_rotary_factor <= 1:
            raise ValueError(f"partial_rotary_factor must be in (0, 1], got {self.partial_rotary_factor!r}")
        if self.rotary_dim % 2 or self.rotary_dim < 2:
            raise ValueError(
                f"head_dim must give an even rotary dimension of at least 2, got head_dim={self.head_dim} "
                f"with partial_rotary_factor={self.partial_rotary_factor} (rotary dim {self.rotary_dim})"
            )
        object.__setattr__(self, "theta", float(self.theta))
        object.__setattr__(self, "head_dim", int(self.head_dim))
        object.__setattr__(self, "original_length", int(self.original_length))
        object.__setattr__(self, "partial_rotary_factor", float(self.partial_rotary_factor))
        object.__setattr__(self, "proportional", bool(self.proportional))
        if self.n_rotated_pairs < 1:
            raise ValueError(f"p-RoPE needs at least one rotated pair, got head_dim={self.head_dim} with "
                             f"partial_rotary_factor={self.partial_rotary_factor}")
        if self.layer_type is not None and (not isinstance(self.layer_type, str) or not self.layer_type):
            raise ValueError(f"layer_type must be a layer type name or None, got {self.layer_type!r}")

    @property
    def rotary_dim(self) -> int:
        """Channels d the frequencies are spread over: int(head_dim * partial_rotary_factor) as transformers, or
        head_dim for p-RoPE (its exponents are over head_dim and its cos/sin cover the whole head)."""
        return self.head_dim if self.proportional else int(self.head_dim * self.partial_rotary_factor)

    @property
    def n_pairs(self) -> int:
        return self.rotary_dim // 2

    @property
    def n_rotated_pairs(self) -> int:
        """Pairs with a non-zero frequency: all of them, or floor(p * head_dim / 2) for p-RoPE (as transformers'
        ``_compute_proportional_rope_parameters``)."""
        return int(self.partial_rotary_factor * self.head_dim // 2) if self.proportional else self.n_pairs

    def inv_freq(self, precision: str = "exact") -> np.ndarray:
        """theta_i = base^(-2i/d), shape (d/2,), float64; p-RoPE's unrotated pairs are 0.

        ``precision="float32"`` computes them as transformers and the DPRoPE release do (torch float32) and
        returns those values widened to float64, so later float32 casts are exact.
        """
        check_precision(precision)
        d, rotated = self.rotary_dim, self.n_rotated_pairs
        out = np.zeros(self.n_pairs, dtype=np.float64)  # (d/2,)
        if precision == "float32":
            import torch  # here, not at module level: the CLI imports this module and must start fast

            exponent = torch.arange(0, 2 * rotated, 2, dtype=torch.int64).float() / d
            out[:rotated] = (1.0 / (self.theta**exponent)).double().numpy()
        else:
            out[:rotated] = power(self.theta, -np.arange(0, 2 * rotated, 2, dtype=np.float64) / d)
        return out

    def wavelengths(self) -> np.ndarray:
        """lambda_i = 2*pi / theta_i, shape (d/2,); inf for p-RoPE's unrotated pairs."""
        with np.errstate(divide="ignore"):
            return 2 * math.pi / self.inv_freq()

    def critical_dimension(self) -> int:
        """d_extra = 2*ceil((d/2) * log_base(L / 2pi)) (Liu et al. 2023); 92 for LLaMA2. At most the rotated
        dimensions (p-RoPE)."""
        d = self.rotary_dim
        dims = 2 * math.ceil((d / 2) * math.log(self.original_length / (2 * math.pi)) / math.log(self.theta))
        return min(dims, 2 * self.n_rotated_pairs)

    def to_dict(self) -> dict[str, Any]:
        """The fields; ``proportional`` and ``layer_type`` only when set, so a plan made before they existed (and
        every cache key over one: training runs, zero-shot results) reads and hashes as it did."""
        data = asdict(self)
        for name, default in (("proportional", False), ("layer_type", None)):
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RopeSpec:
        return cls(**data)

    @classmethod
    def preset(cls, name: str) -> RopeSpec:
        """A published model's RoPE, e.g. ``RopeSpec.preset("llama2-7b")``."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(sorted(PRESETS))}")
        return cls(**PRESETS[name])

    @classmethod
    def from_hf_config(cls, config: Any, layer_type: str | None = None) -> RopeSpec:
        """Read a transformers config (object, dict, config.json path or model folder).

        Reads v5 ``rope_parameters`` and the legacy ``rope_theta``/``rope_scaling`` fields; rope type
        ``proportional`` gives a p-RoPE spec. A config whose layers use different RoPE (Gemma 3: ``full_attention``
        / ``sliding_attention``) needs ``layer_type`` (see :func:`rope_layer_types`), which the spec records.
        """
        cfg = _config_dict(config)
        types = rope_layer_types(cfg)
        params = cfg.get("rope_parameters") or {}
        if types:
            if layer_type is None:
                raise ValueError(f"config has per-layer-type RoPE ({', '.join(types)}); pass layer_type= one of them")
            params = params[check_layer_type(layer_type, types)]
        elif layer_type is not None:
            check_layer_type(layer_type, types)
        legacy = cfg.get("rope_scaling") or {}
        theta = params.get("rope_theta", cfg.get("rope_theta"))
        if theta is None:
            model_type = cfg.get("model_type", "unknown")
            raise ValueError(f"config of model_type {model_type!r} has no RoPE (no rope_theta or rope_parameters)")
        head_dim = _layer_head_dim(cfg, layer_type) or cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        prf = params.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0))
        original = (
            params.get("original_max_position_embeddings")
            or legacy.get("original_max_position_embeddings")
            or cfg.get("original_max_position_embeddings")
            or cfg.get("max_position_embeddings")
        )
        if original is None:
            raise ValueError("config has no max_position_embeddings: cannot tell the pre-training window")
        proportional = (params.get("rope_type") or legacy.get("rope_type") or legacy.get("type")) == "proportional"
        return cls(theta=float(theta), head_dim=int(head_dim), original_length=int(original), partial_rotary_factor=prf,
                   proportional=proportional, layer_type=layer_type)


def rope_layer_types(config: Any) -> tuple[str, ...]:
    """The layer types with their own RoPE in ``config`` (Gemma 3: ``full_attention``, ``sliding_attention``),
    sorted; () when one RoPE serves every layer."""
    params = _config_dict(config).get("rope_parameters") or {}
    if params and all(isinstance(v, Mapping) for v in params.values()):
        return tuple(sorted(params))
    return ()


def default_layer_type(config: Any, layer_type: str | None = None) -> str | None:
    """The layer type the CLI extends: ``layer_type`` if given, else ``full_attention`` for a per-layer-type config
    (sliding-window layers never see past their window, so they keep their RoPE, as Gemma 3 itself does for 128k),
    else None (one RoPE for every layer)."""
    types = rope_layer_types(config)
    if layer_type is not None or not types:
        return layer_type
    if DEFAULT_LAYER_TYPE not in types:
        raise ValueError(f"config has per-layer-type RoPE ({', '.join(types)}) without {DEFAULT_LAYER_TYPE!r}; "
                         "pass a layer type (--layer-type) to extend")
    return DEFAULT_LAYER_TYPE


def check_layer_type(layer_type: Any, allowed: tuple[str, ...]) -> str:
    """Return ``layer_type`` if it is one of ``allowed``, else raise a one-line ValueError naming both."""
    if not allowed:
        raise ValueError(f"layer_type {layer_type!r} given but the config has one RoPE for every layer")
    if layer_type not in allowed:
        raise ValueError(f"unknown layer_type {layer_type!r}; allowed: {', '.join(allowed)}")
    return layer_type


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")


def _layer_head_dim(cfg: dict[str, Any], layer_type: str | None) -> int | None:
    """Head size of ``layer_type``'s layers where ``per_layer_config`` overrides it (Gemma 4's full attention: 512)."""
    overrides, kinds = cfg.get("per_layer_config") or {}, cfg.get("layer_types") or []
    if layer_type is None or not isinstance(overrides, Mapping):
        return None
    sizes = {int(v["head_dim"]) for k, v in overrides.items() if isinstance(v, Mapping) and "head_dim" in v
             and str(k).isdigit() and int(k) < len(kinds) and kinds[int(k)] == layer_type}
    if len(sizes) > 1:
        raise ValueError(f"layers of type {layer_type!r} have different head sizes {sorted(sizes)}")
    return sizes.pop() if sizes else None


def _config_dict(config: Any) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    if isinstance(config, (str, Path)):
        path = Path(config)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise ValueError(f"no config.json at {str(config)!r}")
        from ropelab.user_files import read_json

        data = read_json(path, "model config")
        if not isinstance(data, dict):
            raise ValueError(f"model config {str(path)!r} must hold a JSON object, got {type(data).__name__}")  # noqa: TRY004 (a bad file)
        return data
    if hasattr(config, "to_dict"):
        data = config.to_dict()
        # v5 configs keep standardized rope_parameters as an attribute too
        if getattr(config, "rope_parameters", None) is not None:
            data["rope_parameters"] = dict(config.rope_parameters)
        return data
    raise TypeError(f"config must be a transformers config, a dict or a path, got {type(config).__name__}")
