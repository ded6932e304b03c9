"""Generated docs stay in step with the code: docs/settings.md matches the settings declarations, and
every MODELCI_* name the code or the serving app mentions is declared there."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"\bMODELCI_[A-Z0-9_]*[A-Z0-9]\b")


def _gendocs():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gendocs
    finally:
        sys.path.pop(0)
    return gendocs


def test_settings_table_is_current():
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "gendocs.py"), "--check"], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr


def test_gendocs_check_fails_on_a_stale_table(tmp_path, monkeypatch):
    gendocs = _gendocs()
    stale = tmp_path / "settings.md"
    stale.write_text(gendocs.render().replace("MODELCI_CONFIG", "MODELCI_CONFIG_OLD", 1))
    monkeypatch.setattr(gendocs, "OUT", stale)
    monkeypatch.setattr(gendocs, "ROOT", tmp_path)
    assert gendocs.main(["--check"]) == 1


def test_every_modelci_name_in_scripts_and_app_is_declared():
    gendocs = _gendocs()
    declared = set(gendocs.load_all())
    from modelci import settings

    declared |= {a for v in settings.VARIABLES.values() for a in v.aliases}
    used: dict[str, str] = {}
    for folder in ("scripts", "app"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".md", ".txt", ".sh", "") and "__pycache__" not in path.parts:
                for name in NAME.findall(path.read_text(errors="replace")):
                    used.setdefault(name, str(path.relative_to(ROOT)))
    missing = {n: where for n, where in sorted(used.items()) if n not in declared}
    assert not missing, ("MODELCI_* names used but not declared with settings.var (declare them in "
                         f"scripts/modelci/settings/, then run tools/gendocs.py): {missing}")



def test_code_cites_the_projects_own_docs():
    """Comments cite docs/ pages of this repository, never the team's notes, and every cited
    docs/design.md section exists."""
    allowed: set[str] = set()
    headings = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", (ROOT / "docs" / "design.md").read_text(), re.M)}
    stale, broken = [], []
    for folder in ("scripts", "app", "templates", "tools", "tests"):
        for path in sorted((ROOT / folder).rglob("*")):
            rel = str(path.relative_to(ROOT))
            if not path.is_file() or "__pycache__" in path.parts or ".egg-info" in rel or path == Path(__file__):
                continue
            text = path.read_text(errors="replace")
            if "DECISIONS" in text and rel not in allowed:
                stale.append(rel)
            broken += [f"{rel}: #{a}" for a in re.findall(r"docs/design\.md#([a-z0-9-]+)", text) if a not in headings]
    assert not stale, f"cite docs/design.md (or another docs/ page) instead of the team's notes: {stale}"
    assert not broken, f"no such section in docs/design.md: {broken}"
