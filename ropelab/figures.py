"""One way to save a figure: ``figures/<name>.pdf`` + ``.png`` (byte-stable) + the numbers behind it as CSV."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt

from ropelab.storage import atomic_save, atomic_write_text

STYLE = Path(__file__).with_name("ropelab.mplstyle")
FIGURE_DIR = Path(os.environ.get("ROPELAB_FIGURES", Path(__file__).resolve().parents[1] / "figures"))

# Okabe-Ito: colour-blind safe; one fixed colour per method across every figure.
METHOD_COLORS = {
    "none": "#999999",
    "pi": "#E69F00",
    "ntk": "#56B4E9",
    "dynamic_ntk": "#0072B2",
    "yarn": "#009E73",
    "llama3": "#F0E442",
    "longrope": "#CC79A7",
    "dprope": "#D55E00",
    "dprope_robust": "#000000",
}
# Paul Tol's muted palette: what any other label (a variant, a searched plan) takes, none of it used above
EXTRA_COLORS = ("#882255", "#44AA99", "#332288", "#AA4499", "#117733", "#88CCEE", "#DDCC77", "#661100", "#6699CC",
                "#999933", "#CC6677", "#AA7744")
COLUMN_WIDTH = 3.4  # inches: one column of a two-column paper
FULL_WIDTH = 7.0


def use_style() -> None:
    plt.style.use(STYLE)


def method_color(method: str) -> str:
    """The fixed colour of a registry method (a variant ``method:option`` takes its method's)."""
    return METHOD_COLORS.get(method.split(":")[0], EXTRA_COLORS[0])


def variant_colors(labels: Iterable[str]) -> dict[str, str]:
    """One distinct colour per label of a figure: a registry method keeps its fixed colour, every other label (a
    variant such as ``yarn:no_temp``, a searched plan) takes the next colour of :data:`EXTRA_COLORS` in the order
    given, so that figures drawn from the same labels agree."""
    labels = list(dict.fromkeys(labels))
    extra = iter(EXTRA_COLORS)
    colors = {}
    for label in labels:
        if label in METHOD_COLORS:
            colors[label] = METHOD_COLORS[label]
        else:
            colors[label] = next(extra, None) or _hashed_color(label)
    return colors


def _hashed_color(label: str) -> str:
    import hashlib

    return "#" + hashlib.sha256(label.encode()).hexdigest()[:6]


# DPRoPE variants share DPRoPE's colour and differ by line style; any other label is a solid line in its colour.
LABEL_LINESTYLES = {
    "dprope_paper": "--", "dprope_robust": "-.", "dprope_continuous": ":", "dprope_search": (0, (5, 1, 1, 1, 1, 1)),
    "dprope_nhat24": (0, (3, 1)), "dprope_nhat48": (0, (1, 1)), "dprope_b90": (0, (5, 2)),
    "dprope_b720": (0, (1, 2, 4, 2)), "dprope_js": (0, (3, 1, 1, 1)), "dprope_tv": (0, (6, 1, 1, 1, 1, 1, 1, 1)),
    "dprope_wasserstein": (0, (2, 2)),
}
SCALE_MARKERS = {2: "o", 4: "s", 8: "^"}


def label_family(label: str) -> str:
    """The method family a study row label is coloured by: every ``dprope*`` label is DPRoPE's."""
    return "dprope" if label.startswith("dprope") else label


def label_style(label: str) -> dict[str, Any]:
    """Colour (the method family's) and line style (the variant's) of a study row label."""
    return {"color": method_color(label_family(label)), "linestyle": LABEL_LINESTYLES.get(label, "-")}


def save_figure(fig: plt.Figure, name: str, data: Iterable[Mapping[str, Any]] | Any = None,
                directory: str | Path | None = None) -> Path:
    """Write ``<dir>/<name>.pdf``, ``.png`` and, when ``data`` is given, ``.csv`` (each atomically); return the PDF path.

    ``data`` is a list of row dicts or a pandas-like object with ``to_csv``. Metadata that carries dates or
    versions is stripped, so the same figure gives the same bytes on every run.
    """
    out = Path(directory) if directory is not None else FIGURE_DIR
    out.mkdir(parents=True, exist_ok=True)
    pdf = out / f"{name}.pdf"
    atomic_save(pdf, lambda fh: fig.savefig(fh, format="pdf", metadata={"CreationDate": None, "ModDate": None,
                                                                        "Producer": None, "Creator": None}))
    atomic_save(out / f"{name}.png", lambda fh: fig.savefig(fh, format="png", dpi=200, metadata={"Software": None}))
    if data is not None:
        write_csv(data, out / f"{name}.csv")
    plt.close(fig)
    return pdf


def write_csv(data: Iterable[Mapping[str, Any]] | Any, path: str | Path) -> Path:
    """Rows (dicts) or a DataFrame to CSV (atomically), floats written with 6 significant digits."""
    import csv
    import io

    if hasattr(data, "to_csv"):
        return atomic_write_text(path, data.to_csv(index=False, float_format="%.6g"))
    rows = list(data)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return atomic_write_text(path, text.getvalue())
