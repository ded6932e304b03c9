"""The code's shape, as the developer guide describes it (docs/design.md, "Code layout"):
commands only parse arguments, build a step's settings and call the step; steps hold the logic;
settings are read in one module; no module grows past ~450 lines."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "scripts" / "modelci"
COMMANDS = PKG / "commands"

MAX_COMMAND_LINES = 80
MAX_MODULE_LINES = 450
# what a command may import: its step, its settings, the CLI's error and log helpers, and argparse
ALLOWED_PACKAGE_IMPORTS = ("modelci.steps", "modelci.settings", "modelci.errors", "modelci.log")
ALLOWED_STDLIB = {"__future__", "argparse", "sys", "typing"}

# TEMPORARY: files other helpers are splitting in parallel (issue 10 parts 3-5 and issues 11/14). The
# integrator removes each entry once that branch is merged; the rules then hold for every file.
TEMPORARY_COMMANDS: set[str] = set()
TEMPORARY_LARGE_MODULES: set[str] = set()
TEMPORARY_ENVIRON_READERS: set[str] = set()


def _absolute(module: str | None, level: int, package: str) -> str:
    if level == 0:
        return module or ""
    parts = package.split(".")[: len(package.split(".")) - level + 1]
    return ".".join(parts + ([module] if module else []))


def _imports(path: Path, package: str) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, package)
            if node.module is None:  # `from .. import steps`
                names += [f"{base}.{a.name}" for a in node.names]
            else:
                names.append(base)
    return names


def _allowed(name: str) -> bool:
    return name.split(".")[0] in ALLOWED_STDLIB or any(
        name == p or name.startswith(p + ".") for p in ALLOWED_PACKAGE_IMPORTS)


def _commands() -> list[Path]:
    return sorted(p for p in COMMANDS.glob("*.py") if p.name != "__init__.py" and p.name not in TEMPORARY_COMMANDS)


def test_commands_import_only_steps_settings_and_cli_helpers():
    bad = {p.name: [n for n in _imports(p, "modelci.commands") if not _allowed(n)] for p in _commands()}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"commands may import only {ALLOWED_PACKAGE_IMPORTS} and {sorted(ALLOWED_STDLIB)}: {bad}"


def test_commands_are_thin():
    long = {p.name: n for p in _commands() if (n := len(p.read_text().splitlines())) >= MAX_COMMAND_LINES}
    assert not long, f"commands stay under {MAX_COMMAND_LINES} lines (move logic into modelci.steps): {long}"


def test_every_command_module_has_a_step():
    for p in _commands():
        assert (PKG / "steps" / p.name).exists(), f"commands/{p.name} has no steps/{p.name}"
        assert (PKG / "settings" / p.name).exists(), f"commands/{p.name} has no settings/{p.name}"


def test_steps_never_import_commands():
    offenders = [p.name for p in sorted((PKG / "steps").glob("*.py"))
                 if any(n.startswith("modelci.commands") for n in _imports(p, "modelci.steps"))]
    assert not offenders, f"steps call steps, never commands: {offenders}"


def test_no_module_is_oversized():
    big = {str(p.relative_to(PKG)): n for p in sorted(PKG.rglob("*.py"))
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
           and str(p.relative_to(PKG)) not in TEMPORARY_LARGE_MODULES}
    assert not big, f"split modules over {MAX_MODULE_LINES} lines by concern: {big}"


def test_modelci_variables_are_read_through_settings():
    """Outside modelci.settings, no module reads os.environ for a MODELCI_* name."""
    pattern = re.compile(r"(os\.environ(\.get)?\(|os\.environ\[|getenv\()\s*[\"']MODELCI_")
    offenders = [str(p.relative_to(PKG)) for p in sorted(PKG.rglob("*.py"))
                 if "settings" not in p.relative_to(PKG).parts and pattern.search(p.read_text())
                 and str(p.relative_to(PKG)) not in TEMPORARY_ENVIRON_READERS]
    assert not offenders, f"read MODELCI_* variables through modelci.settings, not os.environ: {offenders}"


def test_the_structure_checks_can_fail(tmp_path):
    """The import check sees a forbidden import (guards the checks above against silently passing)."""
    bad = tmp_path / "x.py"
    bad.write_text("from __future__ import annotations\nimport json\nfrom .. import champion\n"
                   "from ..steps import train\n")
    assert [n for n in _imports(bad, "modelci.commands") if not _allowed(n)] == ["json", "modelci.champion"]
