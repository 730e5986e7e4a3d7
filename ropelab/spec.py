"""The RoPE of a model, described without its weights.

References:
    Su et al., "RoFormer" (2021): theta_i = base^(-2i/d) for pairs i = 0 .. d/2-1.
    Liu et al., "Scaling Laws of RoPE-based Extrapolation" (2023): the critical dimension.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

PRECISIONS = ("exact", "float32")

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
        partial_rotary_factor: fraction of the head that is rotated (1.0 = all of it).
    """

    theta: float
    head_dim: int
    original_length: int
    partial_rotary_factor: float = 1.0

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

    @property
    def rotary_dim(self) -> int:
        """Number of rotated channels d (as transformers: int(head_dim * partial_rotary_factor))."""
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def n_pairs(self) -> int:
        return self.rotary_dim // 2

    def inv_freq(self, precision: str = "exact") -> np.ndarray:
        """theta_i = base^(-2i/d), shape (d/2,), float64.

        ``precision="float32"`` computes them as transformers and the DPRoPE release do (torch float32) and
        returns those values widened to float64, so later float32 casts are exact.
        """
        check_precision(precision)
        d = self.rotary_dim
        if precision == "float32":
            import torch  # here, not at module level: the CLI imports this module and must start fast

            exponent = torch.arange(0, d, 2, dtype=torch.int64).float() / d
            return (1.0 / (self.theta**exponent)).double().numpy()
        return self.theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)

    def wavelengths(self) -> np.ndarray:
        """lambda_i = 2*pi / theta_i, shape (d/2,)."""
        return 2 * math.pi / self.inv_freq()

    def critical_dimension(self) -> int:
        """d_extra = 2*ceil((d/2) * log_base(L / 2pi)) (Liu et al. 2023); 92 for LLaMA2."""
        d = self.rotary_dim
        return 2 * math.ceil((d / 2) * math.log(self.original_length / (2 * math.pi)) / math.log(self.theta))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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

        Reads v5 ``rope_parameters`` and the legacy ``rope_theta``/``rope_scaling`` fields. A config whose
        layers use different RoPE (Gemma 3: ``full_attention`` / ``sliding_attention``) needs ``layer_type``.
        """
        cfg = _config_dict(config)
        params = cfg.get("rope_parameters") or {}
        if params and all(isinstance(v, Mapping) for v in params.values()):
            if layer_type is None:
                raise ValueError(
                    f"config has per-layer-type RoPE ({', '.join(sorted(params))}); pass layer_type= one of them"
                )
            if layer_type not in params:
                raise ValueError(f"unknown layer_type {layer_type!r}; allowed: {', '.join(sorted(params))}")
            params = params[layer_type]
        legacy = cfg.get("rope_scaling") or {}
        theta = params.get("rope_theta", cfg.get("rope_theta"))
        if theta is None:
            model_type = cfg.get("model_type", "unknown")
            raise ValueError(f"config of model_type {model_type!r} has no RoPE (no rope_theta or rope_parameters)")
        head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        prf = params.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0))
        original = (
            params.get("original_max_position_embeddings")
            or legacy.get("original_max_position_embeddings")
            or cfg.get("original_max_position_embeddings")
            or cfg.get("max_position_embeddings")
        )
        if original is None:
            raise ValueError("config has no max_position_embeddings: cannot tell the pre-training window")
        return cls(theta=float(theta), head_dim=int(head_dim), original_length=int(original), partial_rotary_factor=prf)


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")


def _config_dict(config: Any) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    if isinstance(config, (str, Path)):
        path = Path(config)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise ValueError(f"no config.json at {str(config)!r}")
        from ropelab.files import read_json

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
