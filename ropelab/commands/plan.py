"""``ropelab plan``: plan an extension and show its per-pair choices and disturbance."""

from __future__ import annotations

import argparse

from ropelab.rope.registry import METHODS, Option, make_plan, option_specs
from ropelab.rope.spec import PRESETS, RopeSpec, default_layer_type

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
    add_layer_type_argument(src)


def add_layer_type_argument(parser: argparse._ActionsContainer) -> None:
    """--layer-type: which layers of a per-layer-type model (Gemma 3) the plan is for."""
    parser.add_argument("--layer-type", help="per-layer-type RoPE (Gemma 3): the layer type to extend (default: "
                        "full_attention; the other layer types, the sliding-window ones, keep their RoPE)")


def add_method_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--method, --target-length, scoring, --attention-temperature and every method's options (from the registry)."""
    grp = parser.add_argument_group("the extension")
    grp.add_argument("--method", required=required, help=f"one of: {', '.join(METHODS)}")
    grp.add_argument("--target-length", type=int, required=required, help="extended window L'")
    grp.add_argument("--bins", type=int, default=360, help="histogram bins per turn (paper: 360)")
    grp.add_argument("--metric", default="kl", help="divergence: kl, js, tv, wasserstein")
    grp.add_argument("--precision", default="exact", help="exact, or float32 as the authors' release")
    grp.add_argument("--attention-temperature", metavar="BOOL|NUMBER",
                     help="any static method: true = YaRN's 0.1 ln s + 1, a number = that cos/sin scale, false = 1")
    for option, methods in cli_options().items():
        metavar = {"floats": "X,Y,...", "bool": "BOOL"}.get(option.kind)
        grp.add_argument(f"--{option.name.replace('_', '-')}", type=_ARG_TYPES.get(option.kind), metavar=metavar,
                         help=f"{'/'.join(methods)}: {option.help}")


def cli_options() -> dict[Option, list[str]]:
    """Every method option once (its type and help from the first method that has it) -> the methods taking it.

    Raises TypeError when two methods give one option name different types: one flag cannot parse both.
    """
    out: dict[str, tuple[Option, list[str]]] = {}
    for method in METHODS:
        for option in option_specs(method):
            first, methods = out.setdefault(option.name, (option, []))
            if first.kind != option.kind:
                raise TypeError(f"option {option.name!r} is {first.kind} in {methods[0]} but {option.kind} in {method}")
            methods.append(method)
    return {option: methods for option, methods in out.values()}


_ARG_TYPES = {"float": float, "int": int}  # the others are parsed by method_options_from_args (one-line errors)


def spec_from_args(args: argparse.Namespace) -> RopeSpec:
    explicit = (args.rope_theta, args.head_dim, args.original_length)
    given = [args.model is not None, args.preset is not None, any(v is not None for v in explicit)]
    if sum(given) != 1:
        raise ValueError("give exactly one of --model, --preset or --rope-theta/--head-dim/--original-length")
    if args.model is not None:
        return RopeSpec.from_hf_config(args.model, layer_type=default_layer_type(args.model, args.layer_type))
    if args.preset is not None:
        return RopeSpec.preset(args.preset)
    if any(v is None for v in explicit):
        raise ValueError("explicit RoPE needs all of --rope-theta, --head-dim and --original-length")
    return RopeSpec(args.rope_theta, args.head_dim, args.original_length, args.partial_rotary_factor)


def method_options_from_args(args: argparse.Namespace) -> dict:
    """Method options (and ``attention_temperature``) given on the command line, only those set, parsed."""
    options = {}
    for option in cli_options():
        value = getattr(args, option.name, None)
        if value is not None:
            options[option.name] = _parse(option.kind, option.name, value)
    temperature = getattr(args, "attention_temperature", None)
    if temperature is not None:
        options["attention_temperature"] = _parse("bool|float", "attention_temperature", temperature)
    return options


def _parse(kind: str, name: str, value):
    flag = f"--{name.replace('_', '-')}"
    text = str(value).strip()
    if kind == "floats":
        try:
            return [float(x) for x in text.split(",")]
        except ValueError:
            raise ValueError(f"{flag} must be comma-separated numbers, got {value!r}") from None
    if kind in ("bool", "bool|float"):
        if text.lower() in ("true", "yes", "1"):
            return True
        if text.lower() in ("false", "no", "0"):
            return False
        if kind == "bool":
            raise ValueError(f"{flag} must be true or false, got {value!r}")
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{flag} must be true, false or a number, got {value!r}") from None
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    add_method_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--out", help="also write the plan JSON to this file")


def run(args: argparse.Namespace) -> int:
    from ropelab.user_files import check_output_path

    if args.out:
        check_output_path(args.out, "--out")  # before any work
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
    from ropelab.rope.scoring import Scoring, disturbance_per_pair

    spec, scoring = plan.spec, Scoring(plan.bins, plan.metric, plan.precision)
    base = spec.inv_freq(plan.precision)
    d_ext = plan.details.get("d_extrap") or disturbance_per_pair(spec, base, plan.target_length, scoring)
    d_int = plan.details.get("d_interp") or disturbance_per_pair(spec, base / plan.scale, plan.target_length, scoring)
    lines = [
        (f"{plan.method}: L={spec.original_length} -> L'={plan.target_length} (s={plan.scale:g}), theta={spec.theta:g}, "
         f"d={spec.rotary_dim}, bins={plan.bins}, metric={plan.metric}, precision={plan.precision}"
         + (f", p-RoPE ({spec.n_rotated_pairs}/{spec.n_pairs} pairs rotate)" if spec.proportional else "")
         + (f", {spec.layer_type} layers (the others keep their RoPE)" if spec.layer_type else "")),
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


