"""The components lint clean, and the linter catches what GitLab would reject."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import cilint  # noqa: E402


def test_components_and_pipeline_lint_clean():
    assert cilint.lint() == []


def test_readme_tables_are_generated_from_the_specs():
    text = (ROOT / "README.md").read_text()
    assert cilint.render_readme(text) == text
    for name in cilint.readme_tables():
        assert f"<!-- inputs:{name} -->" in text


def test_linter_flags_undeclared_unused_and_undocumented_inputs(tmp_path, monkeypatch):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "x.yml").write_text(
        "spec:\n  inputs:\n    used:\n      default: a\n    unused:\n      description: d\n      default: b\n"
        "---\nx-job:\n  script: [echo $[[ inputs.used ]] $[[ inputs.nope ]]]\n  only: [main]\n")
    (tmp_path / ".gitlab-ci.yml").write_text(
        "include:\n  - component: $CI_SERVER_FQDN/$CI_PROJECT_PATH/x@$CI_COMMIT_SHA\n"
        "    inputs: {used: 1, typo: 2}\nj:\n  script: [true]\n")
    monkeypatch.setattr(cilint, "ROOT", tmp_path)
    monkeypatch.setattr(cilint, "TEMPLATES", tmp_path / "templates")
    problems = "\n".join(cilint.lint())
    assert "spec.inputs.used: no description" in problems
    assert "inputs.nope ]] is used but not declared" in problems
    assert "spec.inputs.unused is declared but never used" in problems
    assert "use rules, not only/except" in problems
    assert "unknown input 'typo'" in problems
