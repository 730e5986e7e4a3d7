"""The papermill runner, and the convention every notebook in ``notebooks/`` follows.

Convention (notebooks 01 .. 07; follow it for new ones)
------------------------------------------------------
1. File name ``notebooks/NN_slug.ipynb``: two digits, then a slug. The runner executes them in numeric order.
2. One code cell tagged ``parameters`` (papermill) near the top, holding typed literals with a comment each,
   at least::

       profile: str = "quick"  # quick | full | gpu: how much work to do
       output_dir: str = "outputs/dev/NN_slug"  # where metrics.json and the run's files go

   The runner injects ``profile`` and ``output_dir`` (``outputs/<profile>/<NN_slug>/``, absolute). A relative
   ``output_dir`` (interactive use) is taken relative to the project root, not the notebook's folder.
   Anything that depends on the profile is derived from ``profile`` in a later cell, not injected. One ``=``
   per line: papermill cannot read a parameter whose comment holds another ``=``.
3. Cells are thin: markdown narrative, then a few lines calling ``ropelab``. Logic used twice lives in the
   package (plots in ``ropelab/plots/<topic>.py``: they take data and return a Figure).
4. Figures go through ``ropelab.figures.save_figure(fig, "NN_name", data=rows)`` -- or :func:`show_figure`,
   which also displays the PNG in the notebook -- into ``figures/`` (the runner
   points ``ROPELAB_FIGURES`` at the folder it was asked to fill). Prefix figure names with the notebook's
   number so that notebooks never overwrite each other's figures.
5. The last cell calls ``write_metrics(metrics, output_dir, parameters=...)``: flat (or nested, flattened with
   dots) numbers only, each finite; ``metrics.json`` (sorted keys) is what the tests and
   ``figures/results.md`` read. ``parameters`` are the notebook's resolved parameters (``parameters.json``).
   Keys under ``noise.`` (rounding errors, e.g. a 1e-13 relative error) are machine-dependent: the tests read
   them, ``results.md`` and ``results.csv`` leave them out, so that those stay byte-stable.
6. Commit notebooks clean (no outputs, no execution counts): write them with :func:`write_notebook` or clean
   them with :func:`clean_notebook`; :func:`notebook_problems` is what the tests check.

Byte-stable outputs: the runner starts every kernel with one OpenMP/MKL thread and ``PYTHONHASHSEED=0``, and
the training and study code pins its own numerics (:mod:`ropelab.determinism`), so a rerun on the same kind of
machine rewrites ``figures/`` byte for byte. :func:`write_results` also writes ``figures/machine.json``
(:func:`ropelab.determinism.machine_fingerprint`): the machine kind that byte-stability holds for.

Running: ``ropelab notebooks run --profile quick [--only 03,04] [--force]`` or :func:`run_notebooks`. The
executed copy of ``NN_slug.ipynb`` lands in ``outputs/<profile>/NN_slug/NN_slug.ipynb``. A notebook is skipped
when its ``metrics.json`` exists and nothing that feeds it changed (its source cells, the injected parameters,
the figure folder and the ropelab package's source files); ``force=True`` re-runs it. A failing notebook
stops the run with :class:`NotebookFailed` (notebook, cell, exception in one line) and keeps the partially
executed copy.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ropelab import figures as _figures
from ropelab.config import CONFIG_DIR, flatten
from ropelab.storage import atomic_write_text, content_key

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
OUTPUT_ROOT = PROJECT_ROOT / "outputs"
PROFILES = ("quick", "full", "gpu")
KERNEL_NAME = "python3"  # the kernelspec named in the notebooks; the runner starts it with this interpreter
NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_[A-Za-z0-9_\-]+\.ipynb$")
RUN_RECORD = "run.json"  # the cache key and figure list of a notebook's last successful run
MACHINE_FILE = "machine.json"  # beside the figures: the machine fingerprint they were made on
NOISE_PREFIX = "noise."  # metrics that are rounding errors: kept out of results.md / results.csv
# The kernel's environment: one thread (thread counts change float32 sums), fixed hashing, no display
KERNEL_ENV = {"MPLBACKEND": "Agg", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class NotebookFailed(RuntimeError):
    """A notebook raised: ``str()`` is one line naming the notebook, the cell and the exception."""

    def __init__(self, notebook: str, cell: int, exec_count: int | None, ename: str, evalue: str, executed: Path):
        self.notebook, self.cell, self.exec_count = notebook, cell, exec_count
        self.ename, self.evalue, self.executed = ename, evalue, executed
        first = (evalue.strip().splitlines() or [""])[0]
        where = f"in cell {cell} (In [{exec_count}])" if cell else "(kernel)"
        super().__init__(f"notebook {notebook} failed {where}: {ename}: {first} (partial copy: {executed})")


@dataclass(frozen=True)
class NotebookRun:
    """What happened to one notebook: ``status`` is "ran" or "cached"."""

    name: str
    status: str
    output_dir: Path
    seconds: float


# --- helpers used inside notebooks ----------------------------------------------------------------------------


def output_path(output_dir: str | Path) -> Path:
    """The notebook's output folder, created; relative paths are taken from the project root."""
    path = Path(output_dir)
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_metrics(metrics: Mapping[str, Any], output_dir: str | Path,
                  parameters: Mapping[str, Any] | None = None) -> Path:
    """Write ``<output_dir>/metrics.json`` (finite floats, sorted keys) and ``parameters.json`` when given.

    Nested mappings are flattened with dots (``{"table3": {"pi_8k": 24.1}}`` -> ``"table3.pi_8k"``). A value
    that is not a finite real number raises ValueError naming its key.
    """
    flat = {key: _finite(key, value) for key, value in flatten(metrics).items()}
    out = output_path(output_dir)
    path = atomic_write_text(out / "metrics.json", json.dumps(flat, indent=1, sort_keys=True) + "\n")
    if parameters is not None:
        atomic_write_text(out / "parameters.json", json.dumps(dict(parameters), indent=1, sort_keys=True, default=str) + "\n")
    return path


def show_figure(fig: Any, name: str, data: Any = None) -> Path:
    """``save_figure`` (PDF, PNG and CSV in the figure folder) and display the PNG in the notebook.

    ropelab's figures use the Agg backend everywhere, so notebooks show the saved PNG rather than the live figure.
    """
    png = _figures.save_figure(fig, name, data=data).with_suffix(".png")
    with contextlib.suppress(ImportError):
        from IPython.display import Image, display

        display(Image(filename=str(png)))
    return png


def show_table(rows: Any, name: str) -> Path:
    """A table of the figures (``<figure folder>/<name>.csv``, as :func:`show_figure` writes a figure's data)."""
    return _figures.write_csv(rows, Path(_figures.FIGURE_DIR) / f"{name}.csv")


def show_text(text: str, name: str) -> Path:
    """A text file beside the figures (``<figure folder>/<name>``, e.g. a markdown table), printed in the notebook."""
    print(text)
    return atomic_write_text(Path(_figures.FIGURE_DIR) / name, text)


def read_metrics(output_dir: str | Path) -> dict[str, float]:
    return json.loads((Path(output_dir) / "metrics.json").read_text())


def _finite(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"metric {key!r} must be a finite number, got {value!r}") from None
    if isinstance(value, (str, bytes)) or not math.isfinite(number):
        raise ValueError(f"metric {key!r} must be a finite number, got {value!r}")
    return number


# --- writing and checking notebook files ----------------------------------------------------------------------


def write_notebook(path: str | Path, cells: Sequence[tuple[str, str]]) -> Path:
    """Write a clean notebook from ``[(kind, source), ...]``; kind is "markdown", "code" or "parameters".

    Cell ids are derived from the position (stable diffs); no outputs, no execution counts.
    """
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": KERNEL_NAME},
        "language_info": {"name": "python"},
    }
    for index, (kind, source) in enumerate(cells):
        source = source.strip("\n")
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(source)
        elif kind in ("code", "parameters"):
            cell = nbformat.v4.new_code_cell(source)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
        else:
            raise ValueError(f"unknown cell kind {kind!r}; allowed: markdown, code, parameters")
        cell.id = f"cell-{index:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    path = Path(path)
    nbformat.write(nb, path)
    return path


def read_notebook(path: str | Path) -> Any:
    """``nbformat.read`` (version 4); a file that is not a notebook is a ValueError naming it."""
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except (OSError, UnicodeDecodeError, ValueError, nbformat.ValidationError) as err:  # NotJSONError is a ValueError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{str(path)!r} is not a readable notebook: {first[:200]}") from None


def clean_notebook(path: str | Path) -> Path:
    """Strip outputs, execution counts, run metadata and papermill's injected cells from a notebook, in place."""
    import nbformat

    path = Path(path)
    nb = read_notebook(path)
    papermill_tags = {"injected-parameters", "papermill-error-cell-tag"}
    nb.cells = [c for c in nb.cells if not papermill_tags & set(c.metadata.get("tags", []))]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        tags = cell.metadata.get("tags")
        cell.metadata = {"tags": tags} if tags else {}
    nb.metadata.pop("papermill", None)
    nbformat.write(nb, path)
    return path


def notebook_problems(path: str | Path) -> list[str]:
    """Why ``path`` breaks the convention (empty when it follows it)."""

    path = Path(path)
    problems = []
    if not NOTEBOOK_PATTERN.match(path.name):
        problems.append(f"name {path.name!r} is not NN_slug.ipynb")
    nb = read_notebook(path)
    for index, cell in enumerate(nb.cells, 1):
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            problems.append(f"cell {index} has outputs or an execution count")
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(params) != 1:
        problems.append(f"needs exactly one cell tagged 'parameters', found {len(params)}")
    else:
        source = params[0].source
        for name in ("profile", "output_dir"):
            if not re.search(rf"^{name}\s*:\s*str\s*=", source, re.MULTILINE):
                problems.append(f"parameters cell lacks a typed literal `{name}: str = ...`")
        unreadable = sorted(set(_assigned_names(source)) - set(_papermill_parameters(params[0])))
        if unreadable:
            problems.append(f"papermill cannot read parameter(s) {', '.join(unreadable)} (one '=' per line)")
    return problems


def _assigned_names(source: str) -> list[str]:
    import ast

    names = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _papermill_parameters(cell: Any) -> list[str]:
    import logging

    from papermill.translators import PythonTranslator

    logger = logging.getLogger("papermill.translators")
    level, logger.level = logger.level, logging.ERROR
    try:
        return [p.name for p in PythonTranslator.inspect(cell)]
    finally:
        logger.setLevel(level)


# --- the runner -----------------------------------------------------------------------------------------------


def discover(notebook_dir: str | Path = NOTEBOOK_DIR, only: Iterable[str] | None = None) -> list[Path]:
    """``NN_*.ipynb`` in numeric order; ``only`` keeps those whose number (``"03"``) or stem is listed."""
    paths = sorted(p for p in Path(notebook_dir).glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name))
    if only is None:
        return paths
    wanted = [str(w).strip() for w in only if str(w).strip()]
    chosen = [p for p in paths if p.name[:2] in wanted or p.stem in wanted]
    matched = {p.name[:2] for p in chosen} | {p.stem for p in chosen}
    missing = [w for w in wanted if w not in matched]
    if missing:
        allowed = ", ".join(p.name[:2] for p in paths) or "none"
        raise ValueError(f"no notebook {missing[0]!r} in {notebook_dir}; allowed: {allowed}")
    return chosen


def run_notebooks(profile: str = "quick", only: Iterable[str] | None = None, force: bool = False,
                  notebook_dir: str | Path = NOTEBOOK_DIR, output_root: str | Path = OUTPUT_ROOT,
                  figure_dir: str | Path | None = None, progress: bool = True,
                  extra: Mapping[str, str] | None = None) -> list[NotebookRun]:
    """Execute every notebook (or ``only`` those) in ``profile``, then write ``figures/results.md`` + ``.csv``.

    ``extra`` sets further parameters that each of the notebooks declares (e.g. notebook 06's ``zeroshot``).

    Returns one NotebookRun per notebook; raises NotebookFailed at the first failing notebook.
    """
    from tqdm.auto import tqdm

    check_profile(profile)
    if not Path(notebook_dir).is_dir():
        raise ValueError(f"notebook folder {str(notebook_dir)!r} does not exist")
    paths = discover(notebook_dir, only)
    if not paths:
        raise ValueError(f"no NN_slug.ipynb notebooks in {str(notebook_dir)!r}")
    figure_dir = Path(figure_dir) if figure_dir is not None else _figures.FIGURE_DIR
    runs = []
    bar = tqdm(paths, desc=f"notebooks ({profile})", unit="nb", disable=not progress)
    for path in bar:
        bar.set_postfix_str(path.stem)
        runs.append(run_notebook(path, profile, Path(output_root) / profile / path.stem, figure_dir, force, extra))
    write_results(Path(output_root) / profile, figure_dir)
    return runs


def run_notebook(path: str | Path, profile: str, output_dir: str | Path, figure_dir: str | Path | None = None,
                 force: bool = False, extra: Mapping[str, str] | None = None) -> NotebookRun:
    """Execute one notebook with papermill into ``output_dir`` (skipped when cached, unless ``force``);
    ``extra``: further parameters, each one the notebook declares (:func:`check_extra`)."""
    import nbformat
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    check_profile(profile)
    path, output_dir = Path(path).resolve(), Path(output_dir).resolve()
    figure_dir = Path(figure_dir if figure_dir is not None else _figures.FIGURE_DIR).resolve()
    parameters = {**check_extra(path, extra or {}), "profile": profile, "output_dir": str(output_dir)}
    key = cache_key(path, parameters, figure_dir)
    if not force and is_cached(output_dir, key):
        return NotebookRun(path.stem, "cached", output_dir, 0.0)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").unlink(missing_ok=True)
    (output_dir / RUN_RECORD).unlink(missing_ok=True)
    executed = output_dir / path.name
    before = _snapshot(figure_dir)
    start = time.perf_counter()
    try:
        with _environ(ROPELAB_FIGURES=str(figure_dir), **KERNEL_ENV):
            papermill.execute_notebook(
                str(path), str(executed), parameters=parameters, kernel_name=KERNEL_NAME, progress_bar=False,
                cwd=str(PROJECT_ROOT), log_output=False, kernel_manager_class=_kernel_manager_class(),
            )
    except papermill.PapermillExecutionError as err:
        raise NotebookFailed(path.stem, _source_cell_number(executed, err.cell_index), err.exec_count,
                             err.ename, str(err.evalue), executed) from None
    except (DeadKernelError, CellTimeoutError, RuntimeError, TimeoutError) as err:  # no cell error to point at
        raise NotebookFailed(path.stem, 0, None, type(err).__name__, str(err), executed) from None
    seconds = time.perf_counter() - start
    if not (output_dir / "metrics.json").is_file():
        raise NotebookFailed(path.stem, len(nbformat.read(path, as_version=4).cells), None, "MissingMetrics",
                             "the notebook did not call write_metrics(..., output_dir)", executed)
    made = sorted(str(p) for p, stamp in _snapshot(figure_dir).items() if before.get(p) != stamp)
    record = {"key": key, "parameters": parameters, "figures": made, "seconds": round(seconds, 3),
              "python": sys.executable}
    atomic_write_text(output_dir / RUN_RECORD, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return NotebookRun(path.stem, "ran", output_dir, seconds)


def check_extra(path: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """``extra`` if every name is a parameter that notebook ``path`` declares, other than the injected two."""
    if not extra:
        return {}
    import papermill

    declared = [n for n in papermill.inspect_notebook(str(path)) if n not in ("profile", "output_dir")]
    for name in extra:
        if name not in declared:
            raise ValueError(f"notebook {path.stem} has no parameter {name!r} to set; it has: "
                             f"{', '.join(declared) or 'none but profile and output_dir'}")
    return dict(extra)


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    return profile


def cache_key(path: Path, parameters: Mapping[str, Any], figure_dir: Path) -> str:
    """sha256 of the notebook's source cells, the injected parameters, the figure folder, ropelab's source and the
    YAML profiles of ``configs/`` (which decide what a profile computes)."""
    nb = read_notebook(path)
    payload = {
        "cells": [[c.cell_type, c.source, sorted(c.metadata.get("tags", []))] for c in nb.cells],
        "parameters": dict(parameters),
        "figure_dir": str(figure_dir),
        "package": package_hash(),
        "configs": tree_hash(CONFIG_DIR, (".yaml",)),
    }
    return content_key(payload, digits=64)


def package_hash() -> str:
    """sha256 over ropelab's source files (.py, .mplstyle), by relative path and content."""
    return tree_hash(PACKAGE_DIR, (".py", ".mplstyle"))


def tree_hash(root: Path, suffixes: Sequence[str]) -> str:
    """sha256 over the files under ``root`` whose suffix is one of ``suffixes``, by relative path and content."""
    files = sorted(f for f in root.rglob("*") if f.suffix in suffixes and "__pycache__" not in f.parts)
    return content_key(blobs=(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0" for f in files),
                       digits=64)


def is_cached(output_dir: Path, key: str) -> bool:
    record_path = Path(output_dir) / RUN_RECORD
    if not (record_path.is_file() and (Path(output_dir) / "metrics.json").is_file()):
        return False
    record = json.loads(record_path.read_text())
    return record.get("key") == key and all(Path(f).is_file() for f in record.get("figures", []))


def write_results(profile_dir: str | Path, figure_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Collect every ``<profile_dir>/NN_slug/metrics.json`` into ``results.md`` and ``results.csv`` (notebook,
    key, value) in ``figure_dir`` (``noise.`` keys left out), and write the machine fingerprint beside them.

    Rows of notebooks that have no metrics.json under ``profile_dir`` (not run here, e.g. ``--only 06`` on a fresh
    checkout) are kept from the existing ``results.csv``, so that running one notebook never drops another's numbers.
    """
    from ropelab.determinism import machine_fingerprint

    profile_dir = Path(profile_dir)
    figure_dir = Path(figure_dir if figure_dir is not None else _figures.FIGURE_DIR)
    figure_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for metrics_path in sorted(profile_dir.glob("*/metrics.json")):
        if NOTEBOOK_PATTERN.match(metrics_path.parent.name + ".ipynb"):
            for key, value in sorted(json.loads(metrics_path.read_text()).items()):
                if key.startswith(NOISE_PREFIX):
                    continue
                rows.append({"notebook": metrics_path.parent.name, "key": key, "value": value})
    fresh = {r["notebook"] for r in rows}
    if (figure_dir / "results.csv").exists():
        with open(figure_dir / "results.csv", newline="") as f:
            rows += [{**r, "value": float(r["value"])} for r in csv.DictReader(f) if r["notebook"] not in fresh]
    rows.sort(key=lambda r: r["notebook"])  # stable: keys stay sorted within a notebook
    csv_path = _figures.write_csv(({**r, "value": f"{r['value']:.6g}"} for r in rows), figure_dir / "results.csv")
    lines = [f"# Results ({profile_dir.name} profile)", "",
             "Generated by `ropelab notebooks run`; one row per number in each notebook's metrics.json.", "",
             "| notebook | key | value |", "|---|---|---|"]
    lines += [f"| {r['notebook']} | {r['key']} | {r['value']:.6g} |" for r in rows]
    md_path = atomic_write_text(figure_dir / "results.md", "\n".join(lines) + "\n")
    atomic_write_text(figure_dir / MACHINE_FILE, json.dumps(machine_fingerprint(), indent=1, sort_keys=True) + "\n")
    return md_path, csv_path


def _source_cell_number(executed: Path, cell_index: int) -> int:
    """1-based position, in the source notebook, of executed cell ``cell_index`` (skips papermill's cells)."""
    import nbformat

    try:
        cells = nbformat.read(executed, as_version=4).cells
    except (OSError, ValueError):
        return cell_index + 1
    skip = {"injected-parameters", "papermill-error-cell-tag"}
    # papermill inserted an error marker at the top and one before the failing cell after recording the index
    original = [c for c in cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    before = original[:cell_index]
    return 1 + sum(1 for c in before if not skip & set(c.metadata.get("tags", [])))


def _kernel_manager_class() -> type:
    """A kernel manager that starts ipykernel with ``sys.executable`` (this interpreter, e.g. ``.venv``), whatever
    python a ``python3`` kernelspec elsewhere on the machine names, so notebooks import the ropelab under test."""
    from jupyter_client.manager import AsyncKernelManager

    class CurrentPythonKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            return [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file, *(extra_arguments or [])]

    return CurrentPythonKernelManager


def _snapshot(directory: Path) -> dict[Path, tuple[int, int]]:
    if not directory.is_dir():
        return {}
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in directory.iterdir() if p.is_file()}


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the kernel papermill starts (it inherits ours), then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
