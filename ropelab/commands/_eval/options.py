"""What every ``ropelab eval`` subcommand shares: the model arguments and the one model loader, the extension
plan, list and grid arguments, the text arguments of the perplexity evaluations, and writing the rows."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ropelab.commands.plan import add_method_arguments, method_options_from_args


# --------------------------------------------------------------------------------------------- the model
def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --dtype, --device and the optional extension (--method/--target-length/options) of eval commands."""
    parser.add_argument("--model", required=True, help="smollm2-135m, a local HF model folder, or a .gguf file")
    parser.add_argument("--dtype", default="float32", help="torch dtype to load in (float32, bfloat16, ...)")
    # None = chosen when the model is loaded (resolve_device): asking torch for CUDA here would slow every --help
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_method_arguments(parser, required=False)


def resolve_device(device: str | None) -> str:
    """``--device`` as given, or ``"cuda"`` if torch sees a GPU, else ``"cpu"``, when it was not given."""
    import torch

    if device is not None:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | None) -> str:
    """The device of ``--device`` (:func:`resolve_device`), once torch has made a tensor on it: an unknown name or a
    device this machine lacks is a ValueError naming it, before any model is loaded."""
    import torch

    name = resolve_device(device)
    try:
        torch.empty(0, device=name)
    except (RuntimeError, AssertionError, ValueError) as err:  # CPU-only torch raises AssertionError for cuda
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"--device {name!r} is not usable here: {first}") from None
    return name


def model_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of ``--model`` in eval mode on ``--device``, in ``--dtype``, without any plan.

    ``--model`` is ``smollm2-135m`` (the offline SmolLM2-135M), a local HF folder with a tokenizer, or a local
    ``.gguf`` file; :func:`ropelab.runtime.models.load_model` loads each of them and turns what stops a load into one line.
    """
    import torch

    from ropelab.runtime.models import SMOLLM2
    from ropelab.runtime.models import load_model as load_local

    dtype = getattr(torch, args.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"--dtype {args.dtype!r} is not a torch dtype (float32, bfloat16, float16)")  # noqa: TRY004 (a bad CLI value)
    device = check_device(args.device)
    if args.model != SMOLLM2 and not Path(args.model).exists():
        raise FileNotFoundError(f"model {args.model!r} not found: give {SMOLLM2}, a local HF folder or a .gguf file")
    model, tokenizer = load_local(args.model, dtype=dtype)
    return model.to(device).eval(), tokenizer


def plan_for(model: Any, method: str, target_length: int, args: argparse.Namespace | None = None) -> Any:
    """The plan of ``method`` to ``target_length`` for ``model``'s RoPE, with the method options found in ``args``."""
    from ropelab.rope.registry import make_plan
    from ropelab.runtime.hf import model_spec

    options = method_options_from_args(args) if args is not None else {}
    scoring = {k: getattr(args, k) for k in ("bins", "metric", "precision") if getattr(args, k, None) is not None}
    return make_plan(method, model_spec(model), target_length, **scoring, **options)


def model_and_plans(args: argparse.Namespace) -> tuple[Any, Any, list[Any]]:
    """``(model, tokenizer, plans)`` from eval-command arguments; the model is returned *without* a plan applied.

    ``--method`` may list several methods separated by commas (one plan each); none gives an empty list.
    """
    methods = [m.strip() for m in (getattr(args, "method", None) or "").split(",") if m.strip()]
    if methods and not getattr(args, "target_length", None):
        raise ValueError("--method needs --target-length")
    check_outputs(args)
    model, tokenizer = model_from_args(args)
    return model, tokenizer, [plan_for(model, m, args.target_length, args) for m in methods]


def evaluate_from_args(args: argparse.Namespace, evaluate: Callable[[Any, Any], tuple[list[dict], dict]]
                       ) -> tuple[list[dict], dict]:
    """Load the model of ``args`` (:func:`model_and_plans`), run ``evaluate(model, tokenizer)`` with the one
    ``--method`` plan applied, and label rows and summary with model, method and target length."""
    from ropelab.runtime.hf import plan_applied

    if args.method and "," in args.method:
        raise ValueError(f"one --method per run, got {args.method!r}")
    model, tokenizer, plans = model_and_plans(args)
    plan = plans[0] if plans else None
    with plan_applied(model, plan):
        rows, summary = evaluate(model, tokenizer)
    extra = {"model": args.model, "method": plan.method if plan else "none",
             "target_length": plan.target_length if plan else None}
    return [{**extra, **row} for row in rows], {**extra, **summary}


# --------------------------------------------------------------------------------------------- numbers
def check_positive(args: argparse.Namespace, *names: str) -> None:
    """Each of the integer options ``names`` (attribute names) is absent or at least 1."""
    from ropelab.rope.spec import check_positive_int

    for name in names:
        if getattr(args, name, None) is not None:
            check_positive_int(f"--{name.replace('_', '-')}", getattr(args, name))


def parse_floats(text: str, name: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--{name} must be comma-separated numbers, got {text!r}") from None


def parse_lengths(text: str) -> list[int]:
    """``--lengths``: comma-separated positive integers (``200.5`` is refused, not cut to 200)."""
    try:
        lengths = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--lengths must be comma-separated integers, got {text!r}") from None
    if not lengths:
        raise ValueError(f"--lengths must list at least one length, got {text!r}")
    if min(lengths) < 1:
        raise ValueError(f"--lengths must be positive, got {min(lengths)} in {text!r}")
    return lengths


def parse_depths(text: str) -> list[float]:
    """``--depths``: comma-separated fractions in [0, 1]."""
    depths = parse_floats(text, "depths")
    if not depths:
        raise ValueError(f"--depths must list at least one depth, got {text!r}")
    bad = [d for d in depths if not 0.0 <= d <= 1.0]
    if bad:
        raise ValueError(f"--depths must be fractions in [0, 1], got {bad[0]:g} in {text!r}")
    return depths


# --------------------------------------------------------------------------------------------- grids


def add_grid_arguments(parser: argparse.ArgumentParser, lengths: Sequence[int], depths: Sequence[float],
                       rows: str) -> None:
    """--lengths, --depths, --csv and --json of a retrieval grid (passkey, NIAH)."""
    parser.add_argument("--lengths", default=",".join(map(str, lengths)), help="prompt lengths in tokens")
    parser.add_argument("--depths", default=",".join(f"{d:g}" for d in depths), help="depths in [0, 1]")
    parser.add_argument("--csv", help=f"write per-{rows} rows here")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run_grid(args: argparse.Namespace, evaluate: Callable[[Any, Any, list[int], list[float]], tuple[list[dict], dict]]
             ) -> int:
    """Run a retrieval grid (passkey, NIAH): ``evaluate(model, tokenizer, lengths, depths)`` over --lengths x
    --depths with the --method plan, rows to --csv, the summary printed (a table, or JSON with --json)."""
    import json

    lengths, depths = parse_lengths(args.lengths), parse_depths(args.depths)
    rows, summary = evaluate_from_args(args, lambda model, tokenizer: evaluate(model, tokenizer, lengths, depths))
    write_rows(rows, args.csv)
    print(json.dumps(summary, indent=2) if args.json else format_cells(summary))
    return 0


def format_cells(summary: dict) -> str:
    """Accuracy table of a retrieval grid: one row per depth, one column per length."""
    lengths = sorted({c["length"] for c in summary["cells"]})
    depths = sorted({c["depth"] for c in summary["cells"]})
    acc = {(c["length"], c["depth"]): c["accuracy"] for c in summary["cells"]}
    lines = ["depth \\ length " + "".join(f"{n:>8}" for n in lengths)]
    for d in depths:
        lines.append(f"{d:>15.2f}" + "".join(f"{acc.get((n, d), float('nan')):>8.2f}" for n in lengths))
    lines.append(f"accuracy {summary['accuracy']:.3f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- text (ppl, retention)
def add_text_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the text comes from, and how it is cut: shared by ``ropelab eval ppl`` and ``retention``."""
    from ropelab.eval.perplexity import DEFAULT_BATCH_TOKENS, DEFAULT_STRIDE

    text = parser.add_argument_group("text (one of)")
    text.add_argument("--corpus", help="shakespeare, paul_graham, stdlib (default), text:<path> or hf:<name>")
    text.add_argument("--text-file", help="a plain-text file (evaluated whole: split 'all')")
    text.add_argument("--text-dir", help="a folder of plain-text files (split 'all')")
    text.add_argument("--split", help="train, validation, test (default for corpora) or all")
    text.add_argument("--max-docs", type=int, help="at most this many documents long enough for each length")
    parser.add_argument("--stride", type=int, default=DEFAULT_STRIDE, help="sliding-window stride (PI/YaRN: 256)")
    parser.add_argument("--batch-tokens", type=int,
                        help=f"tokens per forward batch (default: one window on CPU, {DEFAULT_BATCH_TOKENS} on GPUs)")
    parser.add_argument("--csv", help="write the result rows to this CSV")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def documents_from_args(args: argparse.Namespace, tokenizer: Any) -> tuple[list[tuple[str, Any]], dict]:
    """Token ids of the chosen text, and ``{"corpus", "split"}`` describing it."""
    from ropelab.data import document_tokens

    given = [x for x in (args.corpus, args.text_file, args.text_dir) if x]
    if len(given) > 1:
        raise ValueError("give at most one of --corpus, --text-file and --text-dir")
    if args.text_file or args.text_dir:
        path = Path(args.text_file or args.text_dir)
        if args.text_file and not path.is_file() or args.text_dir and not path.is_dir():
            raise ValueError(f"{'--text-file' if args.text_file else '--text-dir'} {str(path)!r} does not exist")
        corpus, split = f"text:{path}", args.split or "all"
    else:
        corpus, split = args.corpus or "stdlib", args.split or "test"
    return document_tokens(corpus, split, tokenizer), {"corpus": corpus, "split": split}


# --------------------------------------------------------------------------------------------- output
def json_ready(obj: Any) -> Any:
    """``obj`` with NaN/inf floats as None, ready for strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def check_outputs(args: argparse.Namespace) -> None:
    """``--csv`` can be written: :func:`model_and_plans` checks it before the model is loaded, so a bad path costs
    no work. An evaluation writing more files checks them itself, before it calls :func:`evaluate_from_args`."""
    from ropelab.user_files import check_output_path

    if getattr(args, "csv", None):
        check_output_path(args.csv, "--csv")


def write_rows(rows: Sequence[dict], path: str | Path | None) -> None:
    """Rows to the CSV ``path`` (its folder is made); nothing when no path was given."""
    if path:
        from ropelab.figures import write_csv

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_csv(rows, path)
