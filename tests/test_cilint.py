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


def _components(tmp_path, monkeypatch, files: dict[str, str], version: str = "1.2.3",
                changelog: str = "# Changelog\n\n## [1.2.3] - 2026-01-01\n- x\n"):
    (tmp_path / "templates").mkdir()
    for name, text in files.items():
        (tmp_path / "templates" / name).write_text(text)
    (tmp_path / ".gitlab-ci.yml").write_text("j:\n  script: [echo]\n")
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "x"\nversion = "{version}"\n')
    (tmp_path / "CHANGELOG.md").write_text(changelog)
    monkeypatch.setattr(cilint, "ROOT", tmp_path)
    monkeypatch.setattr(cilint, "TEMPLATES", tmp_path / "templates")
    return "\n".join(cilint.lint())


COMPONENT = """spec:
  inputs:
    image:
      description: i
      default: "$CI_REGISTRY/modelci/modelci/tools:{tag}"
    job_prefix:
      description: p
      default: "modelci:"
---
{hidden}"$[[ inputs.job_prefix ]]{job}":
  image: $[[ inputs.image ]]
  script: [modelci {job}]
"""


def test_linter_flags_a_hidden_job_shared_by_two_component_files(tmp_path, monkeypatch):
    """Included files share one namespace: a hidden job defined in two components is merged and the last
    include's values (its image) win for every job that extends it."""
    hidden = ".modelci-base:\n  interruptible: true\n\n"
    problems = _components(tmp_path, monkeypatch, {
        "a.yml": COMPONENT.format(tag="1.2.3", hidden=hidden, job="a"),
        "b.yml": COMPONENT.format(tag="1.2.3", hidden=hidden, job="b")})
    assert "hidden job '.modelci-base' is defined in a, b" in problems
    assert "templates/a.yml: hidden job '.modelci-base' has a fixed name" in problems


def test_linter_passes_components_without_shared_hidden_jobs(tmp_path, monkeypatch):
    problems = _components(tmp_path, monkeypatch, {
        "a.yml": COMPONENT.format(tag="1.2.3", hidden="", job="a"),
        "b.yml": COMPONENT.format(tag="1.2.3", hidden="", job="b")})
    assert problems == ""


def test_linter_flags_a_needs_default_that_ignores_the_job_prefix(tmp_path, monkeypatch):
    text = COMPONENT.format(tag="1.2.3", hidden="", job="deploy").replace(
        "---\n", '    needs:\n      description: n\n      type: array\n      default: [{job: "modelci:build"}]\n---\n'
    ).replace("  script:", "  needs: $[[ inputs.needs ]]\n  script:")
    problems = _components(tmp_path, monkeypatch, {"deploy.yml": text})
    assert "templates/deploy.yml: spec.inputs.needs: default names a job with the literal prefix 'modelci:'" \
        in problems


def test_version_lint_fails_when_one_template_names_another_version(tmp_path, monkeypatch):
    problems = _components(tmp_path, monkeypatch, {
        "a.yml": COMPONENT.format(tag="1.2.3", hidden="", job="a"),
        "b.yml": COMPONENT.format(tag="1.2.2", hidden="", job="b")})
    assert "templates/b.yml: image tools:1.2.2 does not name version 1.2.3" in problems
    assert "templates/a.yml" not in problems
    (tmp_path / "templates" / "c.yml").write_text(COMPONENT.format(tag="1.2.3", hidden="", job="c").replace(
        "modelci/modelci/tools:1.2.3", "modelci/modelci/proxy:2.0.0"))
    assert "templates/c.yml: image proxy:2.0.0 does not name version 1.2.3" in "\n".join(cilint.lint())


def test_version_lint_needs_a_changelog_section_for_the_version(tmp_path, monkeypatch):
    problems = _components(tmp_path, monkeypatch, {"a.yml": COMPONENT.format(tag="1.2.3", hidden="", job="a")},
                           changelog="# Changelog\n\n## [Unreleased]\n- x\n")
    assert "CHANGELOG.md: no '## [1.2.3]' section" in problems


def test_components_define_no_hidden_jobs_and_derive_needs_from_the_prefix():
    """The real components: no hidden job at all (keys are inlined), and the deploy job's needs name
    jobs through $[[ inputs.job_prefix ]]."""
    for path in (ROOT / "templates").glob("*.yml"):
        body = path.read_text().split("\n---\n", 1)[1]
        assert not any(line.startswith((".", '".')) for line in body.splitlines()), path
    deploy = (ROOT / "templates" / "deploy.yml").read_text()
    assert '- job: "$[[ inputs.job_prefix ]]build"' in deploy
