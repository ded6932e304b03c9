"""The rule matrix: which modelci jobs each kind of pipeline holds (docs/design.md#which-pipeline-does-what).

GitLab tests its own templates this way (create pipelines for branch/variable combinations and
assert which jobs exist). Here gitlab-ci-local lists the jobs of this repository's real
.gitlab-ci.yml (which includes the components from the same commit) with `--list-json`: every job's
`rules` (if + changes) are evaluated, no job runs. Each case is a commit in a copy of a temporary
project whose `origin/main` is the previous commit, so `rules: changes` sees exactly that commit.

gitlab-ci-local sets CI_PIPELINE_SOURCE=push and CI_COMMIT_BRANCH=<checked-out branch>; a merge
request pipeline (and a tag pipeline) has no CI_COMMIT_BRANCH on GitLab, so those cases unset it.
Every GitLab address is a loopback value (nothing is contacted: no job runs).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import localci
import pytest

TRAIN, GATE, BUILD, STAGING, PROD, MONITOR = (
    "modelci:train", "modelci:gate", "modelci:build", "modelci:staging", "modelci:production", "modelci:monitor")
PUBLISH = "modelci:publish"
RELEASE = ("release:tools-image", "release:notes")
AUTO, MANUAL, ALWAYS = "on_success", "manual", "always"  # publish runs also after a REJECT

FULL = {TRAIN: AUTO, GATE: AUTO, PUBLISH: ALWAYS, BUILD: AUTO, STAGING: AUTO, PROD: MANUAL}
IMAGE_ONLY = {BUILD: AUTO, STAGING: AUTO, PROD: MANUAL}
NOTHING: dict[str, str] = {}

MR_VARS = {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_IID": "7",
           "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "more-data", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
           "CI_COMMIT_REF_NAME": "more-data"}


def change_data(repo: Path) -> None:
    with open(repo / "model" / "data" / "wine.csv", "a") as fh:
        fh.write((repo / "model" / "data" / "new-batch.csv").read_text())


def change_config(repo: Path) -> None:
    cfg = repo / "model" / "modelci.yml"
    cfg.write_text(cfg.read_text().replace("max_iter: 1000", "max_iter: 2000"))


def change_app(repo: Path) -> None:
    p = repo / "app" / "README.md"
    p.write_text(p.read_text() + "\nServing notes.\n")


def change_dockerfile(repo: Path) -> None:
    p = repo / "Dockerfile"
    p.write_text(p.read_text() + "\n# a comment\n")


def change_readme(repo: Path) -> None:
    p = repo / "README.md"
    p.write_text(p.read_text() + "\nA line of docs.\n")


def no_change(repo: Path) -> None:
    pass


@dataclass
class Case:
    change: object  # callable(repo)
    expected: dict[str, str]  # the modelci:* and release:* jobs that run, with their `when`
    variables: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    branch: str | None = None  # commit on this branch instead of main
    tag: str | None = None  # tag the commit and check it out (detached), as a tag pipeline does


CASES = {
    # merge requests: train + gate only (the gate reports to the MR); never an image or a deploy
    "mr_data_change": Case(change_data, {TRAIN: AUTO, GATE: AUTO, PUBLISH: ALWAYS}, MR_VARS, ("CI_COMMIT_BRANCH",), "more-data"),
    "mr_config_change": Case(change_config, {TRAIN: AUTO, GATE: AUTO, PUBLISH: ALWAYS}, MR_VARS, ("CI_COMMIT_BRANCH",), "more-data"),
    "mr_app_change": Case(change_app, NOTHING, MR_VARS, ("CI_COMMIT_BRANCH",), "more-data"),
    "mr_readme_change": Case(change_readme, NOTHING, MR_VARS, ("CI_COMMIT_BRANCH",), "more-data"),
    # a push to another branch (no merge request): nothing
    "branch_push_data_change": Case(change_data, NOTHING, branch="more-data"),
    # default branch
    "default_data_change": Case(change_data, FULL),
    "default_config_change": Case(change_config, FULL),
    "default_app_only": Case(change_app, IMAGE_ONLY),
    "default_dockerfile_only": Case(change_dockerfile, IMAGE_ONLY),
    "default_nothing_relevant": Case(change_readme, NOTHING),
    # FORCE_RETRAIN=true (a maintainer's manual run), with no change at all
    "force_retrain_no_change": Case(no_change, FULL, {"FORCE_RETRAIN": "true"}),
    # a drift-triggered retrain: a pipeline created through the API, with no pipeline variables
    "api_retrain_no_change": Case(no_change, FULL, {"CI_PIPELINE_SOURCE": "api"}),
    "api_pipeline_other_branch": Case(no_change, NOTHING, {"CI_PIPELINE_SOURCE": "api"}, branch="more-data"),
    # deploy freeze: train, gate and build still run, no deploy job exists
    "deploy_freeze_data_change": Case(change_data, {TRAIN: AUTO, GATE: AUTO, BUILD: AUTO, PUBLISH: ALWAYS},
                                      {"CI_DEPLOY_FREEZE": "true"}),
    "deploy_freeze_force_retrain": Case(no_change, {TRAIN: AUTO, GATE: AUTO, BUILD: AUTO, PUBLISH: ALWAYS},
                                        {"CI_DEPLOY_FREEZE": "true", "FORCE_RETRAIN": "true"}),
    # schedules: only the monitor job, with no schedule variable (pipeline variables may be blocked),
    # even on a commit that changed the data (GitLab treats `changes` as true in a schedule)
    "schedule_monitor": Case(change_data, {MONITOR: AUTO}, {"CI_PIPELINE_SOURCE": "schedule"}),
    "schedule_force_retrain_ignored": Case(change_data, {MONITOR: AUTO},
                                           {"CI_PIPELINE_SOURCE": "schedule", "FORCE_RETRAIN": "true"}),
    # a semver tag of this repository: the release only, never a model pipeline
    "semver_tag": Case(change_data, {job: AUTO for job in RELEASE},
                       {"CI_COMMIT_TAG": "1.2.3", "CI_COMMIT_REF_NAME": "1.2.3"}, ("CI_COMMIT_BRANCH",),
                       tag="1.2.3"),
    "other_tag": Case(change_data, NOTHING, {"CI_COMMIT_TAG": "nightly", "CI_COMMIT_REF_NAME": "nightly"},
                      ("CI_COMMIT_BRANCH",), tag="nightly"),
}


@pytest.fixture(scope="module")
def base_repo(tmp_path_factory):
    """This project's files in a temporary repo, already pushed (origin/main == HEAD: nothing counts
    as changed until a case commits)."""
    repo = localci.make_project(tmp_path_factory.mktemp("rules") / "base")
    localci.git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    return repo


@pytest.fixture(scope="module")
def gitlab(tmp_path_factory):
    # a registry that is never started: only its loopback address is used (no job runs)
    return localci.LocalGitLab(localci.Registry(9, tmp_path_factory.mktemp("noregistry")))


def prepare(base: Path, dest: Path, case: Case) -> Path:
    repo = Path(shutil.copytree(base, dest, symlinks=True))
    if case.branch:
        localci.git(repo, "checkout", "-q", "-b", case.branch)
    case.change(repo)
    localci.commit(repo, "the change under test")
    if case.tag:
        localci.git(repo, "tag", case.tag)
        localci.git(repo, "checkout", "-q", "--detach", case.tag)
    return repo


def active(jobs: dict[str, str]) -> dict[str, str]:
    return {name: when for name, when in jobs.items()
            if when != "never" and (name.startswith("modelci:") or name.startswith("release:"))}


@pytest.mark.parametrize("name", list(CASES))
def test_rule_matrix(name, base_repo, gitlab, tmp_path):
    case = CASES[name]
    repo = prepare(base_repo, tmp_path / "repo", case)
    jobs = localci.list_jobs(repo, gitlab, variables=case.variables, unset=case.unset)
    assert {TRAIN, GATE, BUILD, PUBLISH, STAGING, PROD, MONITOR} <= set(jobs), jobs  # every component was included
    assert active(jobs) == case.expected, f"{name}: {jobs}"
    ok, out = localci.check_needs(repo, gitlab, variables=case.variables, unset=case.unset)
    assert ok, f"{name}: a job needs a job that does not run:\n{out}"


def test_tag_pipeline_sees_the_tag_not_a_branch(base_repo, gitlab, tmp_path):
    """The tag case is faithful: the commit is checked out detached at the tag, so gitlab-ci-local's
    own CI_COMMIT_BRANCH would be `HEAD`, never the default branch, even before it is unset."""
    repo = prepare(base_repo, tmp_path / "repo", CASES["semver_tag"])
    assert localci.git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "HEAD"
    jobs = localci.list_jobs(repo, gitlab, variables={"CI_COMMIT_TAG": "1.2.3"})
    assert not {j for j, w in active(jobs).items() if j.startswith("modelci:")}, jobs
