"""Static checks CI runs: ruff on all Python, mypy on the package and the app, shellcheck on every shell
script."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELL_SCRIPTS = sorted([*ROOT.glob("tools/*.sh"), ROOT / ".ci" / "run"])


def test_ruff_is_clean():
    ruff = Path(sys.executable).parent / "ruff"
    res = subprocess.run([str(ruff), "check", "scripts", "app", "tests", "tools", "bench"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:]


def test_mypy_is_clean():
    mypy = Path(sys.executable).parent / "mypy"  # settings (files, python_version) in pyproject [tool.mypy]
    res = subprocess.run([str(mypy)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-1000:]


def test_shellcheck_is_clean():
    exe = shutil.which("shellcheck")
    assert exe, "shellcheck missing: tools/harness.sh installs it"
    res = subprocess.run([exe, *map(str, SHELL_SCRIPTS)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:]
