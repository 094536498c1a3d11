"""The repository keeps its promises: README commands = CI's, light import, fixed data files present."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The set-up commands in the README's first code block."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert block, "README.md has no code block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.split("#")[0].strip()]


def test_readme_opens_with_the_two_commands():
    commands = readme_commands()
    assert len(commands) == 2, commands
    assert "bliss_utils reproduce" in commands[0]
    assert "pytest" in commands[1]
    head = (ROOT / "README.md").read_text().split("```")[0]
    assert len(head.splitlines()) <= 8, "the commands must come in the README's first lines"


def test_ci_runs_the_readmes_test_command():
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert readme_commands()[1] in ci_lines


def test_import_is_light():
    # scikit-learn is imported on purpose (BLISS is a BaseEstimator); the deep-learning stack is not
    heavy = "('torch', 'open_clip', 'transformers', 'pyod')"
    code = f"import sys, bliss_utils; bliss_utils.BLISS; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_fixed_data_files_are_packaged():
    data = ROOT / "bliss_utils" / "data"
    for name in ("splits.json", "imagenet1k_class_names.txt", "tinyimagenet_classes.tsv", "reported.json"):
        assert (data / name).is_file(), name
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert [n[:3] for n in notebooks] == [f"{i:02d}_" for i in range(len(notebooks))], notebooks


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement)[0]).lower()


def test_environment_yml_pins_every_direct_dependency_at_the_locked_version():
    tomllib = __import__("pytest").importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = [project["dependencies"], *project["optional-dependencies"].values()]
    direct = {_name(r) for group in groups for r in group}
    lock_text = (ROOT / ".ci" / "requirements.lock").read_text()
    locked = {_name(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", lock_text, re.M)}
    env_text = (ROOT / "environment.yml").read_text()
    pinned = {_name(m[1]): m[2] for m in re.finditer(r"^\s*-\s+([A-Za-z0-9_.-]+)==(\S+)\s*$", env_text, re.M)}
    assert direct == set(pinned), f"not pinned: {direct - set(pinned)}; not direct: {set(pinned) - direct}"
    differ = {n: (v, locked[n]) for n, v in pinned.items() if n in locked and locked[n] != v}
    assert not differ, f"environment.yml against the lock: {differ}"
    assert {"torch", "numpy", "pytest"} <= set(locked)  # the lock is the compiled one, not an empty file
