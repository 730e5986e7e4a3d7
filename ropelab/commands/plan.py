"""``ropelab plan``: plan an extension and show its per-pair choices and disturbance."""

from __future__ import annotations

import argparse

from ropelab.methods import METHODS, make_plan
from ropelab.spec import PRESETS, RopeSpec

NAME = "plan"
HELP = "Plan a RoPE extension (per-pair frequencies and disturbance) for a model, preset or explicit RoPE."


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """--model / --preset / --rope-theta, --head-dim, --original-length: where the RoPE comes from."""
    src = parser.add_argument_group("the pre-trained RoPE (one of)")
    src.add_argument("--model", help="HF model folder or config.json")
    src.add_argument("--preset", help=f"published model: {', '.join(PRESETS)}")
    src.add_argument("--rope-theta", type=float, help="RoPE base")
    src.add_argument("--head-dim", type=int, help="attention head size")
    src.add_argument("--original-length", type=int, help="pre-training window L")
    src.add_argument("--partial-rotary-factor", type=float, default=1.0)
    src.add_argument("--layer-type", help="for configs with per-layer-type RoPE (e.g. Gemma 3)")


def add_method_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--method, --target-length and every method's options."""
    grp = parser.add_argument_group("the extension")
    grp.add_argument("--method", required=required, help=f"one of: {', '.join(METHODS)}")
    grp.add_argument("--target-length", type=int, required=required, help="extended window L'")
    grp.add_argument("--bins", type=int, default=360, help="histogram bins per turn (paper: 360)")
    grp.add_argument("--metric", default="kl", help="divergence: kl, js, tv, wasserstein")
    grp.add_argument("--precision", default="exact", help="exact, or float32 as the authors' release")
    grp.add_argument("--threshold", type=float, help="dprope: interpolate where D_extrap > D_interp + t")
    grp.add_argument("--n-hat", type=int, help="dprope: number of interpolated dimensions")
    grp.add_argument("--beta", type=float, help="dprope_robust: pairs with more turns in L always extrapolate")
    grp.add_argument("--factor", type=float, help="pi/ntk/yarn/llama3/dynamic_ntk scale (default L'/L)")
    grp.add_argument("--beta-fast", type=float, help="yarn")
    grp.add_argument("--beta-slow", type=float, help="yarn")
    grp.add_argument("--attention-factor", type=float, help="yarn/longrope")
    grp.add_argument("--low-freq-factor", type=float, help="llama3")
    grp.add_argument("--high-freq-factor", type=float, help="llama3")
    grp.add_argument("--length", type=int, help="dynamic_ntk: sequence length to evaluate at")
    grp.add_argument("--factors", help="longrope: comma-separated per-pair factors")


def spec_from_args(args: argparse.Namespace) -> RopeSpec:
    explicit = (args.rope_theta, args.head_dim, args.original_length)
    given = [args.model is not None, args.preset is not None, any(v is not None for v in explicit)]
    if sum(given) != 1:
        raise ValueError("give exactly one of --model, --preset or --rope-theta/--head-dim/--original-length")
    if args.model is not None:
        return RopeSpec.from_hf_config(args.model, layer_type=args.layer_type)
    if args.preset is not None:
        return RopeSpec.preset(args.preset)
    if any(v is None for v in explicit):
        raise ValueError("explicit RoPE needs all of --rope-theta, --head-dim and --original-length")
    return RopeSpec(args.rope_theta, args.head_dim, args.original_length, args.partial_rotary_factor)


def method_options_from_args(args: argparse.Namespace) -> dict:
    """Method options given on the command line (only those set)."""
    names = ["beta", "threshold", "n_hat", "factor", "beta_fast", "beta_slow", "attention_factor", "low_freq_factor",
             "high_freq_factor", "length"]
    options = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if getattr(args, "factors", None):
        try:
            options["factors"] = [float(x) for x in args.factors.split(",")]
        except ValueError:
            raise ValueError(f"--factors must be comma-separated numbers, got {args.factors!r}") from None
    return options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    add_method_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--out", help="also write the plan JSON to this file")


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    plan = make_plan(args.method, spec, args.target_length, bins=args.bins, metric=args.metric,
                     precision=args.precision, **method_options_from_args(args))
    if args.out:
        plan.save(args.out)
    if args.json:
        print(plan.to_json())
        return 0
    print(format_plan(plan))
    return 0


def format_plan(plan) -> str:
    """A readable table: pair, wavelength, D_extrap, D_interp, factor, choice."""
    from ropelab.methods import Scoring, disturbance_per_pair

    spec, scoring = plan.spec, Scoring(plan.bins, plan.metric, plan.precision)
    base = spec.inv_freq(plan.precision)
    d_ext = plan.details.get("d_extrap") or disturbance_per_pair(spec, base, plan.target_length, scoring)
    d_int = plan.details.get("d_interp") or disturbance_per_pair(spec, base / plan.scale, plan.target_length, scoring)
    lines = [
        (f"{plan.method}: L={spec.original_length} -> L'={plan.target_length} (s={plan.scale:g}), theta={spec.theta:g}, "
         f"d={spec.rotary_dim}, bins={plan.bins}, metric={plan.metric}, precision={plan.precision}"),
        f"{'pair':>4} {'wavelength':>12} {'D_extrap':>10} {'D_interp':>10} {'factor':>8}  choice",
    ]
    for i, (lam, de, di, f) in enumerate(zip(spec.wavelengths(), d_ext, d_int, plan.factors)):
        choice = "extrapolate" if abs(f - 1) < 1e-9 else ("interpolate" if abs(f - plan.scale) < 1e-9 else "blend")
        lines.append(f"{i:>4} {lam:>12.1f} {de:>10.3e} {di:>10.3e} {f:>8.4f}  {choice}")
    lines.append(
        f"disturbance {plan.disturbance * 1e3:.2f} x1e-3 (mean over {spec.n_pairs} pairs); "
        f"interpolated dims {plan.n_interpolated_dims}/{spec.rotary_dim}; attention factor {plan.attention_factor:g}"
    )
    return "\n".join(lines)


