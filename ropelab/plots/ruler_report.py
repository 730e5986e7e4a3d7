"""RULER's figures and tables from scored rows, drawn the same way for one run (notebook 06) and for several pooled
runs (``ropelab pool``): the heatmap, one interval figure per task with several prompts, the averages with their
thresholds, the effective lengths, the per-prompt samples, and the paired tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ropelab.experiments.zeroshot.samples import SAMPLES_FILE, read_samples, sample_rows
from ropelab.experiments.zeroshot.summary import (
    comparison_table,
    effective_lengths,
    interval_cells,
    ruler_averages,
    ruler_thresholds,
)
from ropelab.plots.ruler_table import ruler_table
from ropelab.storage import atomic_write_text

ShowFigure = Callable[[Any, str, Any], Any]  # (figure, name, data): save_figure or the notebook's show_figure
ShowTable = Callable[[Any, str], Any]  # (rows, name): a CSV beside the figures
ShowText = Callable[[str, str], Any]  # (text, file name): a text file beside the figures
TABLE_FILE = "06_ruler_table.md"


def ruler_report(rows: Sequence[Mapping[str, Any]], window: int, pass_threshold: float, colors: Mapping[str, str],
                 show: ShowFigure, table: ShowTable, text: ShowText) -> tuple[dict[str, float], list[str]]:
    """Draw and save every RULER figure and table of ``rows`` (scored rows with ``method``, ``task``, ``length``,
    ``index``, ``score``, ``prompt``), the per-task markdown table (:data:`TABLE_FILE`) included; return the metrics
    (``ruler.<method>.<length>``, effective lengths, the relative bar) and the lines to print."""
    from ropelab.plots.retrieval import interval_plot
    from ropelab.plots.ruler import ruler_average_plot, ruler_heatmap

    metrics: dict[str, float] = {}
    lines: list[str] = []
    table(sample_rows(rows, window), SAMPLES_FILE.removesuffix(".csv"))
    cells = interval_cells(rows, "score", keys=("method", "task", "length"))
    methods = list(dict.fromkeys(c["method"] for c in cells))
    show(ruler_heatmap({m: [c for c in cells if c["method"] == m] for m in methods}, window=window, colors=colors),
         "06_ruler_heatmap", cells)
    several = [c for c in cells if c["n"] > 1]  # the tasks with several prompts per length
    for task in dict.fromkeys(c["task"] for c in several):
        mine = [c for c in several if c["task"] == task]
        show(interval_plot(mine, value="score", title=f"RULER {task}: score, 95% interval", window=window,
                           colors=colors), f"06_ruler_{task}", mine)
    averages = ruler_averages(rows)
    thresholds = ruler_thresholds(averages, pass_threshold, window)
    show(ruler_average_plot({m: [a for a in averages if a["method"] == m] for m in methods}, window=window,
                            thresholds=thresholds, colors=colors), "06_ruler_average", averages)
    text(ruler_table(cells, averages), TABLE_FILE)
    effective = effective_lengths(averages, thresholds)
    table(effective, "06_effective_length")
    relative = [value for name, value in thresholds.items() if name.startswith("relative")]
    if relative:
        metrics["ruler.threshold"] = relative[0]
    else:
        lines.append("no relative bar: the unextended model was not run within its window")
    for a in averages:
        metrics[f"ruler.{a['method']}.{a['length']}"] = a["score"]
        lines.append(f"RULER {a['method']:>16} {a['length']:>6}: {a['score']:.2f} [{a['low']:.2f}, {a['high']:.2f}] "
                     f"({a['tasks']} tasks, {a['n']} prompts)")
    for e in effective:
        kind = "absolute" if "absolute" in e["threshold"] else "relative"
        metrics[f"ruler.{e['method']}.effective_length.{kind}"] = e["effective_length"]
        lines.append(f"effective length {e['method']:>16} at {e['threshold']} ({e['value']:.3f}): "
                     f"{e['effective_length']}")
    return metrics, lines


def paired_report(result: Mapping[str, Any], variants: Sequence[str], lengths: Sequence[int], window: int,
                  table: ShowTable) -> tuple[dict[str, float], list[str]]:
    """:func:`ropelab.experiments.zeroshot.summary.comparison_table` saved as ``06_paired_tests``; the p-values
    pooled past the window as metrics, and one line per test."""
    tests = comparison_table(result, variants, lengths, window)
    if tests:
        table(tests, "06_paired_tests")
    metrics: dict[str, float] = {}
    lines = []
    for t in tests:
        if t["lengths"] == "past L":
            metrics[f"paired.{t['outcome']}.{t['a']}_vs_{t['b']}.p"] = t["p"]
        extra = (f"{t['a_only']} vs {t['b_only']} discordant" if t["test"] == "mcnemar"
                 else f"[{t['low']:+.3f}, {t['high']:+.3f}]")
        lines.append(f"{t['outcome']:>8} {t['a']:>14} - {t['b']:<14} {t['lengths']:>7}: {t['difference']:+.3f} "
                     f"({extra}), n={t['n']}, p={t['p']:.3f}")
    return metrics, lines


def folder_writers(folder: Path) -> tuple[ShowFigure, ShowTable, ShowText]:
    """The three save functions of :func:`ruler_report` writing into ``folder`` (notebook 06's own also display them)."""
    from ropelab.figures import save_figure, write_csv

    def show(fig: Any, name: str, data: Any) -> None:
        save_figure(fig, name, data=data, directory=folder)

    def table(data: Any, name: str) -> None:
        write_csv(data, folder / f"{name}.csv")

    def text(body: str, name: str) -> None:
        atomic_write_text(folder / name, body)

    return show, table, text


def pooled_report(folders: Sequence[str | Path], figures: Path, pass_threshold: float) -> list[str]:
    """RULER's figures, tables and paired tests of the union of several runs' ``06_ruler_samples.csv``
    (:func:`ropelab.experiments.zeroshot.samples.read_samples`), written to ``figures`` with the names notebook 06
    gives them (its pooled samples file included, so that a pooled folder can itself be pooled); the lines to print."""
    from ropelab.figures import variant_colors

    rows, window = read_samples(folders)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lengths = sorted({r["length"] for r in rows})

    show, table, write_text = folder_writers(figures)
    tables: list[str] = []

    def text(body: str, name: str) -> None:
        write_text(body, name)
        tables.append(body.rstrip())

    figures.mkdir(parents=True, exist_ok=True)
    _, lines = ruler_report(rows, window, pass_threshold, variant_colors(methods), show, table, text)
    _, tests = paired_report({"ruler": rows}, methods, lengths, window, table)
    atomic_write_text(figures / "sources.txt", "".join(f"{Path(f).as_posix()}\n" for f in folders))
    return [(f"pooled {len(rows)} scored prompts ({len(methods)} methods, lengths {lengths}, window {window}) from "
            f"{', '.join(map(str, folders))} into {figures}"), *tables, *lines, *tests]
