"""The release check refuses to ship mismatched pieces (tools image tag, package version, changelog)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import release  # noqa: E402

from modelci.errors import ModelCIError  # noqa: E402


@pytest.fixture
def tree(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "CHANGELOG.md").write_text("# Changelog\n\n## [0.1.0] - 2026-11-25\n### Added\n- everything\n")
    monkeypatch.setattr(release, "ROOT", tmp_path)
    return tmp_path


def test_matching_version_passes_and_yields_aliases_and_notes(tree):
    plan = release.check("0.1.0")
    assert plan["aliases"] == ["0.1", "0"]
    assert "everything" in plan["notes"]


@pytest.mark.parametrize("version, fragment", [
    ("v0.1.0", "not semver"),
    ("0.2.0", "pyproject.toml: version is 0.1.0"),
])
def test_mismatches_are_refused(tree, version, fragment):
    with pytest.raises(ModelCIError, match=fragment):
        release.check(version)


def test_a_template_pinned_to_another_tools_tag_is_refused(tree):
    p = tree / "templates" / "train.yml"
    p.write_text(p.read_text().replace("tools:0.1.0", "tools:0.0.9"))
    with pytest.raises(ModelCIError, match="templates/train.yml: default image tag tools:0.0.9"):
        release.check("0.1.0")


def test_missing_changelog_section_is_refused(tree):
    (tree / "CHANGELOG.md").write_text("# Changelog\n\n## [Unreleased]\n- x\n")
    with pytest.raises(ModelCIError, match="CHANGELOG.md: no"):
        release.check("0.1.0")


@pytest.mark.e2e
def test_release_pushes_the_tools_image_with_alias_tags(tmp_path, monkeypatch, registry, base_image):
    """The semver-tag release job's command, for real: build images/tools.Dockerfile and push
    X.Y.Z, X.Y and X (one digest) to a registry that needs a login."""
    import localci
    import requests

    src = tmp_path / "src"
    for rel in localci.tracked_files(ROOT):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    (src / "CHANGELOG.md").write_text("# Changelog\n\n## [0.1.0] - 2026-11-25\n### Added\n- first release\n")
    monkeypatch.setattr(release, "ROOT", src)
    monkeypatch.setenv("CI_REGISTRY_USER", registry.htpasswd[0])
    monkeypatch.setenv("CI_REGISTRY_PASSWORD", registry.htpasswd[1])
    image = f"{registry.host}/modelci/modelci/tools"
    proxy = f"{registry.host}/modelci/modelci/proxy"
    assert release.main(["--version", "0.1.0", "--image", image, "--proxy-image", proxy,
                         "--base-image", base_image, "--notes", str(tmp_path / "notes.md")]) == 0
    assert "first release" in (tmp_path / "notes.md").read_text()
    tags = requests.get(f"http://{registry.host}/v2/modelci/modelci/tools/tags/list",
                        auth=registry.htpasswd, timeout=5).json()["tags"]
    assert {"0.1.0", "0.1", "0"} <= set(tags)
    digests = {requests.head(f"http://{registry.host}/v2/modelci/modelci/tools/manifests/{t}",
                             auth=registry.htpasswd, timeout=5,
                             headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
                             ).headers["Docker-Content-Digest"] for t in ("0.1.0", "0.1", "0")}
    assert len(digests) == 1
    # the deploy proxy is released with it: same version, same tags, one digest
    proxy_tags = requests.get(f"http://{registry.host}/v2/modelci/modelci/proxy/tags/list",
                              auth=registry.htpasswd, timeout=5).json()["tags"]
    assert {"0.1.0", "0.1", "0"} <= set(proxy_tags)
    proxy_digests = {requests.head(f"http://{registry.host}/v2/modelci/modelci/proxy/manifests/{t}",
                                   auth=registry.htpasswd, timeout=5,
                                   headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
                                   ).headers["Docker-Content-Digest"] for t in ("0.1.0", "0.1", "0")}
    assert len(proxy_digests) == 1


def test_release_jobs_run_through_gitlab_ci_local_up_to_the_cli(tmp_path):
    """The semver-tag pipeline's release jobs, as gitlab-ci-local runs them (shell executor, loopback
    addresses only): release:tools-image calls tools/release.py (with --dry-run: no image is built
    or pushed), which checks the versions and writes out/release-notes.md; release:notes hands that
    file to GitLab's release through the `release:` keyword, which needs glab, absent here. The
    only change to .gitlab-ci.yml: the jobs' docker:dind service is dropped (services need a bridge
    network and an image pulled from Docker Hub, neither allowed on these machines)."""
    import localci
    import yaml

    repo = localci.make_project(tmp_path / "proj")
    ci = yaml.safe_load((repo / ".gitlab-ci.yml").read_text())
    jobs = {name: job for name, job in ci.items() if name.startswith("release:")}
    assert set(jobs) == {"release:tools-image", "release:notes"}
    assert jobs["release:tools-image"]["script"] == [
        'python3 tools/release.py --version "$CI_COMMIT_TAG" --image "$CI_REGISTRY_IMAGE/tools" '
        '--proxy-image "$CI_REGISTRY_IMAGE/proxy" $RELEASE_FLAGS']
    assert jobs["release:notes"]["image"].startswith("registry.gitlab.com/gitlab-org/cli:")
    assert jobs["release:notes"]["release"] == {"tag_name": "$CI_COMMIT_TAG", "description": "out/release-notes.md"}
    assert jobs["release:notes"]["needs"] == ["release:tools-image"]
    for job in jobs.values():
        job.pop("services", None)
    (repo / ".gitlab-ci-release.yml").write_text(yaml.safe_dump(ci, sort_keys=False))
    localci.commit(repo, "release under test")
    localci.git(repo, "tag", "0.1.0")
    localci.git(repo, "checkout", "-q", "--detach", "0.1.0")

    gitlab = localci.LocalGitLab(localci.Registry(9, tmp_path / "noregistry"))  # never started: no push
    result = localci._gitlab_ci_local(
        repo, gitlab, ["--shell-isolation", "--force-shell-executor"], project_path="mlops/wine",
        jobs=["release:tools-image", "release:notes"], extra_args=["--file", ".gitlab-ci-release.yml"],
        variables={"CI_COMMIT_TAG": "0.1.0", "CI_COMMIT_REF_NAME": "0.1.0", "RELEASE_FLAGS": "--dry-run"},
        timeout=300)
    out = result.output
    assert result.jobs.get("release:tools-image") == "passed", out
    assert ('python3 tools/release.py --version "$CI_COMMIT_TAG" --image "$CI_REGISTRY_IMAGE/tools" '
            '--proxy-image "$CI_REGISTRY_IMAGE/proxy" $RELEASE_FLAGS') in out
    assert '"dry_run": true' in out and '"0.1.0",' in out and '"0.1",' in out
    assert '"image": "127.0.0.1:9/mlops/wine/tools"' in out  # the loopback registry, never contacted
    notes = (repo / "out" / "release-notes.md").read_text().strip()  # the job's artifact, copied back
    assert notes and notes in (repo / "CHANGELOG.md").read_text()
    # release:notes got the file through `needs` and ran its script; gitlab-ci-local stops there: the
    # `release:` keyword (glab, in GitLab's CLI image) is GitLab's step, kept as written
    assert result.jobs.get("release:notes") == "passed", out
    assert "releasing 0.1.0" in out
    (handed,) = (repo / ".gitlab-ci-local" / "builds").glob("*notes/out/release-notes.md")
    assert handed.read_text().strip() == notes
    expanded = yaml.safe_load((repo / ".gitlab-ci-local" / "expanded-gitlab-ci.yml").read_text())
    assert expanded["release:notes"]["release"] == {"tag_name": "$CI_COMMIT_TAG",
                                                    "description": "out/release-notes.md"}
