"""The study on GPU clusters: one ``accelerate launch`` line per (variant, seed) of a real base model's study.

``python -m ropelab.experiments.study.launch commands --profile gpu [--accelerate-config X]`` prints them (docs/gpu.md).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ropelab.experiments.study.config import StudyConfig, load_study_config, variants
from ropelab.experiments.study.run import run_folder, run_recipe, study_root


def launch_commands(cfg: StudyConfig, root: str | Path | None = None,
                    accelerate_config: str = "configs/accelerate/deepspeed-zero3.yaml", search: bool = False) -> list[str]:
    """One ``accelerate launch`` line per (variant, seed), each with its recipe written to ``<run>/study_recipe.yaml``.

    ``search``: run the ``dprope_search`` variant's search here first (it loads the model); without it that
    variant is left out of the lines (notebook 07 then searches and trains it in-process).

    For GPU clusters: run the lines (in any order, on any nodes sharing the cache), then run notebook 07 (or
    :func:`run_study`) with the same profile: it finds the finished runs by their hash and only evaluates them.
    """
    from ropelab.config import save_config
    from ropelab.experiments.study.search import SEARCH_LABEL, resolve_searches
    from ropelab.rope.spec import RopeSpec

    root = study_root(cfg, root)
    base_dir = Path(cfg.base_model)
    if cfg.base_model == "tiny":
        raise ValueError("launch_commands is for a real base_model (a HF folder); the tiny study runs in-process")
    spec = RopeSpec.from_hf_config(base_dir / "config.json")
    lines = []
    grid = variants(cfg, spec)
    if search:
        grid, _ = resolve_searches(cfg, grid, base_dir, root, progress=True)
    else:
        grid = [v for v in grid if v.label != SEARCH_LABEL]
    for variant in grid:
        for seed in cfg.seeds if variant.group == "main" else cfg.sweep_seeds:
            plan = variant.plan(spec)
            recipe = run_recipe(cfg, variant, plan, base_dir, seed)
            run_dir = run_folder(root, variant, seed, recipe, plan)
            save_config(dataclasses.replace(recipe, output_dir=str(run_dir)), run_dir / "study_recipe.yaml")
            lines.append(f"accelerate launch --config_file {accelerate_config} -m ropelab.train "
                         f"--config {run_dir / 'study_recipe.yaml'} --output-dir {run_dir}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m ropelab.experiments.study.launch commands --profile gpu [--accelerate-config X]``: print the launch lines."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ropelab.experiments.study.launch", description=main.__doc__)
    parser.add_argument("what", choices=["commands"])
    parser.add_argument("--profile", default="gpu", help="configs/study/<profile>.yaml or a YAML path")
    parser.add_argument("--accelerate-config", default="configs/accelerate/deepspeed-zero3.yaml")
    parser.add_argument("--search", action="store_true", help="run dprope_search's search first and include it")
    args = parser.parse_args(argv)
    print("\n".join(launch_commands(load_study_config(args.profile), accelerate_config=args.accelerate_config,
                                     search=args.search)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
