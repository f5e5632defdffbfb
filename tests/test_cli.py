"""The one command: ``stylenet`` lists its subcommands, each runs its module, and the lower floors
never import the app or the command line."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from stylenet.cli import COMMANDS, main
from stylenet.units import duration

from .conftest import ROOT


def test_help_lists_every_subcommand():
    result = subprocess.run([sys.executable, "-m", "stylenet", "--help"], capture_output=True, text=True, check=True)
    for name in ("train", "stylize", "optimize", "export", "jobs", "app"):
        assert f"    {name}" in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0 and f"usage: stylenet {name}" in capsys.readouterr().out


def test_a_subcommand_runs_its_module(tmp_path, capsys):
    assert main(["jobs", "--models-dir", str(tmp_path / "models"), "--train-photos", str(tmp_path), "list"]) == 0
    assert capsys.readouterr().out == ""


def imports(path: Path) -> set[str]:
    """The stylenet modules ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found |= {module} | {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("stylenet")}


def test_no_module_imports_the_app_or_the_cli_from_below():
    upper = ("stylenet.app", "stylenet.cli")
    for path in (ROOT / "stylenet").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if name.startswith(upper) or name == "stylenet.__main__":
            continue
        bad = [m for m in imports(path) if m.startswith(upper)]
        assert not bad, f"{name} imports {bad}"


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "stylenet").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
    assert len((ROOT / "app.py").read_text().splitlines()) < 40


def test_one_duration_format():
    assert [duration(s) for s in (45, 185, 7620)] == ["45 s", "3 min 05 s", "2 h 07 min"]
    assert [duration(s, estimate=True) for s in (5, 750, 9180)] == ["1 min", "12 min", "2 h 33 min"]
