"""The study's tables and metrics: the main table (mean +- std per method and scale) and metrics.json's numbers."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ropelab.config import flatten
from ropelab.experiments.study.config import StudyConfig, eval_lengths
from ropelab.rope.paper import even_dims
from ropelab.stats import cell_summary, detectable_effect, paired_ci, spearman
from ropelab.storage import atomic_write_text


def disturbance_points(rows: Sequence[Mapping[str, Any]], window: int, multiple: int | None = None,
                       prefix: str = "ppl") -> list[dict]:
    """One point per main (method, scale): disturbance and the mean of ``<prefix>_<n>`` at the target length (or
    ``multiple`` x L); ``value`` holds it (and ``ppl`` too when the prefix is ppl)."""
    points = []
    for cell in cell_summary([r for r in rows if r["group"] == "main"], ["disturbance"]):
        n = window * (multiple or cell["scale"])
        values = [r[f"{prefix}_{n}"] for r in rows
                  if r["label"] == cell["label"] and r["scale"] == cell["scale"] and f"{prefix}_{n}" in r]
        if not values:
            continue
        point = {"label": cell["label"], "method": cell["method"], "scale": cell["scale"],
                 "disturbance": cell["disturbance_mean"], "value": float(np.mean(values)), "length": n}
        if prefix == "ppl":
            point["ppl"] = point["value"]
        points.append(point)
    return points


def table_metrics(window: int, cfg: StudyConfig) -> list[str]:
    ppl = [f"ppl_{n}" for n in eval_lengths(cfg, window)]
    retrieval = [f"{task}_{round(m * window)}" for task in cfg.retrieval_tasks() for m in cfg.eval.retrieval_multiples]
    generated = ([f"generated_passkey_{round(m * window)}" for m in cfg.eval.passkey_multiples]
                 if cfg.eval.passkey_trials > 0 else [])
    return ["disturbance", "n_interp_dims", *ppl, f"retention_{window // 2}", f"retention_{window}", *retrieval,
            *generated]


def study_table(rows: Sequence[Mapping[str, Any]], base: Mapping[str, Any], metrics: Sequence[str]) -> list[dict]:
    """The study's main table: the pre-trained model, then one row per (label, scale) with mean and std."""
    table = [{"label": "pretrained", "method": "none", "group": "pretrained", "scale": 1, "n": 1,
              **{f"{m}_mean": base[m] for m in metrics if m in base}, **{f"{m}_std": 0.0 for m in metrics if m in base}}]
    return table + cell_summary(rows, metrics)


def write_study_table(table: Sequence[Mapping[str, Any]], metrics: Sequence[str], directory: str | Path | None = None,
                      name: str = "study_results", title: str = "Study") -> tuple[Path, Path]:
    """``<dir>/<name>.md`` (mean +- std per cell) and ``<name>.csv`` (mean and std columns); dir: figures/."""
    from ropelab import figures

    out = Path(directory) if directory is not None else figures.FIGURE_DIR
    out.mkdir(parents=True, exist_ok=True)
    columns = ["label", "method", "group", "scale", "n"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    csv_path = figures.write_csv([{c: r.get(c, "") for c in columns} for r in table], out / f"{name}.csv")
    lines = [f"# {title}", "", ("mean +- std over seeds; ppl_N: truncated perplexity of the first N tokens of held-out"
                                " segments; retention_N: ppl_N / pre-trained ppl_N; copy_N, recall_N: teacher-forced answer accuracy on"
                                " held-out rows of N tokens."), "",
             "| method | scale | n | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 3) + "|"]
    for r in table:
        cells = [_pm(r.get(f"{m}_mean"), r.get(f"{m}_std")) for m in metrics]
        lines.append(f"| {r['label']} | {r['scale']}x | {r['n']} | " + " | ".join(cells) + " |")
    md_path = atomic_write_text(out / f"{name}.md", "\n".join(lines) + "\n")
    return md_path, csv_path


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    digits = 4 if abs(mean) < 0.1 else 3
    return f"{mean:.{digits}g} +- {std:.2g}" if std else f"{mean:.{digits}g}"


def reference_metrics(profile_dir: str | Path, notebook: str, pattern: str = r"ppl|passkey|perplexity") -> dict:
    """Numbers of another notebook's metrics.json (keys matching ``pattern``), or {} when it has not run."""
    import re

    found = sorted(Path(profile_dir).glob(f"{notebook}*/metrics.json"))
    if not found:
        return {}
    data = json.loads(found[0].read_text())
    return {k: v for k, v in sorted(data.items()) if re.search(pattern, k)}


def study_metrics(result: Mapping[str, Any], cfg: StudyConfig) -> dict[str, Any]:
    """Every number of the study as a flat dict for metrics.json (see the notebook for the key names)."""
    rows, base, window = result["rows"], result["base"], result["window"]
    metrics = table_metrics(window, cfg)
    out: dict[str, Any] = {"window": window, "runs": len(rows)}  # not how many were cached: same file either way
    out["pretrained"] = {k: v for k, v in base.items() if k.startswith(("ppl_", "band_", "copy_", "recall_",
                                                                        "needle_", "passkey_", "generated_"))}
    # positions L/2..L-1 (inside the window) against the worst band of positions past L, same segments
    out["check.pretrained_ppl_inside"] = base.get(f"band_{window}", float("nan"))
    out["check.pretrained_ppl_past"] = max((base[f"band_{n}"] for n in eval_lengths(cfg, window) if n > window),
                                           default=float("nan"))
    out["check.pretrained_break_ratio"] = out["check.pretrained_ppl_past"] / out["check.pretrained_ppl_inside"]
    # more context inside the window: truncated ppl of L tokens against L/2 (below 1: the model uses its context)
    out["check.pretrained_context_ratio"] = base.get(f"ppl_{window}", math.nan) / base.get(f"ppl_{window // 2}", math.nan)
    for task in cfg.retrieval_tasks():
        out[f"check.pretrained_{task}_inside"] = base.get(f"{task}_{window}", math.nan)
        out[f"check.pretrained_{task}_past"] = base.get(f"{task}_{2 * window}", math.nan)
        far = round(max(cfg.eval.retrieval_multiples) * window)  # the longest rows scored
        out[f"check.pretrained_{task}_far"] = base.get(f"{task}_{far}", math.nan) if far > window else math.nan
    expected = {(label, s) for label in cfg.methods for s in cfg.scales
                if label != "dprope_paper" or s in cfg.paper_nhat_ratio}
    table = cell_summary(rows, metrics)
    present = {(c["label"], c["scale"]) for c in table if all(
        math.isfinite(c.get(f"ppl_{n}_mean", math.nan)) for n in eval_lengths(cfg, window))}
    out["check.main_rows_expected"] = len(expected)
    out["check.main_rows_finite"] = len(expected & present)
    for cell in table:
        prefix = f"cell.{cell['label']}.x{cell['scale']}"
        for key, value in cell.items():
            if key.endswith(("_mean", "_std")):
                out[f"{prefix}.{key}"] = value
    outcomes = [("ppl", True)] + [(task, False) for task in cfg.retrieval_tasks()]
    for scale in cfg.scales:
        for prefix, lower in outcomes:
            target = f"{prefix}_{window * scale}"
            for baseline in [m for m in cfg.methods if m != "dprope"]:
                if "dprope" not in cfg.methods:
                    continue
                cmp = paired_ci(rows, target, scale, "dprope", baseline, lower_is_better=lower)
                for key in ("wins", "n", "mean_diff", "ci_low", "ci_high", "sd_diff", "p"):
                    out[f"paired.{prefix}.dprope_vs_{baseline}.x{scale}.{key}"] = cmp[key]
                if cmp["n"] >= 2:
                    out[f"paired.{prefix}.dprope_vs_{baseline}.x{scale}.detectable"] = detectable_effect(
                        cmp["sd_diff"], cmp["n"])
    for prefix, _ in outcomes:
        points = disturbance_points(rows, window, prefix=prefix)
        if len(points) >= 3:
            rho, p = spearman([q["disturbance"] for q in points], [q["value"] for q in points])
            out[f"spearman.disturbance_vs_{prefix}.rho"], out[f"spearman.disturbance_vs_{prefix}.p"] = rho, p
            out[f"spearman.disturbance_vs_{prefix}.n"] = len(points)
    return {k: v for k, v in flatten(out).items() if isinstance(v, (int, float)) and math.isfinite(v)}


def sweeps(result: Mapping[str, Any], cfg: StudyConfig) -> dict[str, Any]:
    """The sweeps at ``cfg.sweep_scale`` over ``cfg.sweep_seeds``: ``keys`` (perplexity at L' and 2L', each retrieval
    task at L'), ``rows`` (the sweep's runs), ``nhat`` and ``bins`` as sorted (value, label) pairs (the paper's
    n_hat ratio and the default bins among them), and ``divergence``: one row per divergence with its interpolated
    dimensions and the mean of every key over seeds."""
    window, s = result["window"], cfg.sweep_scale
    keys = [f"ppl_{window * s}", f"ppl_{2 * window * s}"] + [f"{t}_{window * s}" for t in cfg.retrieval_tasks()]
    paper_n = even_dims(cfg.paper_nhat_ratio.get(s, 0.5), result["spec"].rotary_dim)
    rows = [r for r in result["rows"] if r["scale"] == s and r["seed"] in cfg.sweep_seeds]
    divergence = []
    for name, label in [("kl", "dprope")] + [(m, f"dprope_{m}") for m in cfg.metric_sweep]:
        members = [r for r in rows if r["label"] == label]
        if members:
            divergence.append({"metric": name, "n_interp_dims": members[0]["n_interp_dims"],
                               **{k: float(np.mean([r[k] for r in members])) for k in keys}})
    return {"keys": keys, "rows": rows, "divergence": divergence,
            "nhat": sorted([(n, f"dprope_nhat{n}") for n in cfg.nhat_sweep] + [(paper_n, "dprope_paper")]),
            "bins": sorted([(b, f"dprope_b{b}") for b in cfg.bins_sweep] + [(cfg.bins, "dprope")])}
