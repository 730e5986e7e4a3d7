"""RopePlan: per-pair frequencies of an extended model, with the disturbance they cause."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ropelab.rope.spec import RopeSpec
from ropelab.storage import atomic_write_text

# Registry methods whose frequencies follow the sequence length (dynamic NTK): no static per-pair form. Filled by
# ``ropelab.rope.registry.register(dynamic=True)``; read through ``RopePlan.dynamic``.
DYNAMIC_METHODS: set[str] = set()

# A pair counts as interpolated when its frequency is divided by more than this (YaRN's ramp ends are not exact).
INTERPOLATED_ABOVE = 1.0 + 1e-6


def max_relative_error(actual: np.ndarray, wanted: np.ndarray) -> float:
    """max_i |actual_i - wanted_i| / wanted_i over frequencies; absolute where wanted_i = 0 (p-RoPE's unrotated
    pairs); inf for different shapes."""
    actual, wanted = np.asarray(actual, np.float64), np.asarray(wanted, np.float64)
    if actual.shape != wanted.shape:
        return float("inf")
    return float(np.max(np.abs(actual - wanted) / np.where(wanted != 0, np.abs(wanted), 1.0)))


@dataclass(frozen=True)
class RopePlan:
    """What a RoPE extension does to each frequency pair, and what it costs in disturbance.

    Attributes:
        method: registry name (see ``ropelab.METHODS``).
        spec: the pre-trained RoPE.
        target_length: extended window L'.
        options: the method's options, as given.
        factors: per pair, theta_i' = theta_i / factor_i, shape (d/2,).
        attention_factor: multiplies cos/sin (YaRN's temperature; 1 for DPRoPE).
        disturbance_per_pair: D^i = divergence(P_L^i || P_L'^i) of the plan's frequencies (DPRoPE eq. 8).
        bins, metric, precision: how the disturbance was measured.
        details: method-specific numbers (DPRoPE: both candidates' disturbance per pair).
    """

    method: str
    spec: RopeSpec
    target_length: int
    options: dict[str, Any]
    factors: tuple[float, ...]
    attention_factor: float
    disturbance_per_pair: tuple[float, ...]
    bins: int = 360
    metric: str = "kl"
    precision: str = "exact"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def dynamic(self) -> bool:
        """Whether the frequencies follow the sequence length (a ``register(dynamic=True)`` method)."""
        return self.method in DYNAMIC_METHODS

    @property
    def dynamic_length(self) -> int | None:
        """For a dynamic plan, the sequence length its frequencies are fixed at (option ``length``, default the
        target length); None for a static plan."""
        return int(self.options.get("length") or self.target_length) if self.dynamic else None

    @property
    def scale(self) -> float:
        """s = L' / L."""
        return self.target_length / self.spec.original_length

    @property
    def inv_freq(self) -> np.ndarray:
        """theta_i / factor_i, shape (d/2,) float64."""
        return self.spec.inv_freq(self.precision) / np.asarray(self.factors)

    @property
    def interpolated_pairs(self) -> tuple[int, ...]:
        return tuple(int(i) for i in np.flatnonzero(np.asarray(self.factors) > INTERPOLATED_ABOVE))

    @property
    def n_interpolated_dims(self) -> int:
        """Interpolated *dimensions*, as the paper counts n_hat (two per pair)."""
        return 2 * len(self.interpolated_pairs)

    @property
    def disturbance(self) -> float:
        """Mean of D^i over pairs: the paper's disturbance of a whole plan (Table 3, before x1e3)."""
        return float(np.mean(self.disturbance_per_pair))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "spec": self.spec.to_dict(),
            "target_length": self.target_length,
            "options": self.options,
            "factors": list(self.factors),
            "attention_factor": self.attention_factor,
            "disturbance_per_pair": list(self.disturbance_per_pair),
            "bins": self.bins,
            "metric": self.metric,
            "precision": self.precision,
            "details": self.details,
            # derived, written for readers that do not import ropelab
            "inv_freq": self.inv_freq.tolist(),
            "interpolated_pairs": list(self.interpolated_pairs),
            "disturbance": self.disturbance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RopePlan:
        derived = {"inv_freq", "interpolated_pairs", "disturbance"}
        kwargs = {k: v for k, v in data.items() if k not in derived}
        kwargs["spec"] = RopeSpec.from_dict(kwargs["spec"])
        kwargs["factors"] = tuple(kwargs["factors"])
        kwargs["disturbance_per_pair"] = tuple(kwargs["disturbance_per_pair"])
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RopePlan:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RopePlan:
        from ropelab.user_files import read_json

        data = read_json(path, "plan file")
        if not isinstance(data, dict):
            raise ValueError(f"plan file {str(path)!r} must hold a JSON object, got {type(data).__name__}")  # noqa: TRY004 (a bad file)
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError) as err:
            raise ValueError(f"plan file {str(path)!r} is not a ropelab plan ({type(err).__name__}: {err})") from None
