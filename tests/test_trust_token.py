"""No GitLab write token where models load (issue 12 part 3), through the real pipeline definition.

This repository's .gitlab-ci.yml (its components included from the same commit) runs under
gitlab-ci-local with a variables file that gives MODELCI_GITLAB_TOKEN the environment scopes
`modelci setup` uses (setup.TOKEN_SCOPES), the way GitLab resolves environment-scoped CI/CD
variables. Every job's script is replaced by a probe that says only whether the variable is set (the
value is never printed); the jobs' rules, needs, environments and variables stay the components'.
"""
from __future__ import annotations

import re
from pathlib import Path

import localci
import pytest
import yaml

from modelci.setup import TOKEN_KEY, TOKEN_SCOPES

ROOT = Path(__file__).resolve().parents[1]
LOADS_MODELS = ("modelci:train", "modelci:gate", "modelci:build", "modelci:staging", "modelci:production")
HOLDS_TOKEN = {"modelci:publish", "modelci:monitor"}
PROBE = (f'if [ -n "${{{TOKEN_KEY}:-}}" ]; then echo "token-probe $CI_JOB_NAME present"; '
         f'else echo "token-probe $CI_JOB_NAME absent"; fi')


def _probe_all_jobs(repo: Path, jobs: list[str]) -> None:
    ci = repo / ".gitlab-ci.yml"
    overrides = {job: {"script": [PROBE], "artifacts": {"paths": ["README.md"]}} for job in jobs}
    ci.write_text(ci.read_text() + "\n# test probes\n" + yaml.safe_dump(overrides, sort_keys=True))
    localci.git(repo, "add", "-A")
    localci.git(repo, "commit", "-q", "-m", "probe every job")


def _run(repo: Path, variables_file: Path, variables: dict[str, str], manual: list[str]) -> dict[str, str]:
    gitlab = localci.LocalGitLab(localci.Registry(9, repo.parent / "noregistry"))
    result = localci._gitlab_ci_local(repo, gitlab, ["--force-shell-executor"], project_path="mlops/wine",
                                      variables=variables, manual=manual,
                                      extra_args=["--variables-file", variables_file.name], timeout=300)
    assert result.returncode == 0, result.output[-3000:]
    assert "glpat-scoped-publish-token" not in result.output  # never printed
    return dict(re.findall(r"token-probe (modelci:\S+) (present|absent)", result.output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("token")
    repo = localci.make_project(root / "repo")
    jobs = [*LOADS_MODELS, "modelci:monitor"] + (["modelci:publish"] if (ROOT / "templates" / "publish.yml").exists()
                                                 else [])
    _probe_all_jobs(repo, jobs)
    values = {scope: "glpat-scoped-publish-token" for scope in TOKEN_SCOPES}
    # gitlab-ci-local reads the variables file relative to the project directory (untracked there)
    variables_file = repo / ".gitlab-ci-local-variables.yml"
    variables_file.write_text(yaml.safe_dump({TOKEN_KEY: {"values": values}}))
    return repo, variables_file


def test_token_reaches_only_publish_and_monitor_in_a_default_branch_pipeline(repo):
    repo, variables_file = repo
    seen = _run(repo, variables_file, {"FORCE_RETRAIN": "true"}, ["modelci:production"])
    assert set(LOADS_MODELS) <= set(seen), seen  # every model-loading job ran and was probed
    if (ROOT / "templates" / "publish.yml").exists():
        assert seen.get("modelci:publish") == "present", seen
    assert {job: state for job, state in seen.items() if job not in HOLDS_TOKEN} == \
        {job: "absent" for job in seen if job not in HOLDS_TOKEN}


def test_token_reaches_the_scheduled_monitor(repo):
    repo, variables_file = repo
    seen = _run(repo, variables_file, {"CI_PIPELINE_SOURCE": "schedule"}, [])
    assert seen == {"modelci:monitor": "present"}
