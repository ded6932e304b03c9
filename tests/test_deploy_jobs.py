"""Deploy-job settings and the drift retrain, asserted through gitlab-ci-local's job listing (no job runs).

Each case starts from a clean default-branch commit (origin/main = HEAD), makes one kind of change
(uncommitted tracked changes count for `rules: changes`, as a push would), sets the pipeline
variables GitLab would, and lists the jobs that would be created.
"""
from __future__ import annotations

import localci
import pytest
import yaml

TRAIN, GATE, BUILD, STAGING, PROD, MONITOR = ("modelci:train", "modelci:gate", "modelci:build",
                                             "modelci:staging", "modelci:production", "modelci:monitor")
RELEASE = "release:tools-image"
PUBLISH = "modelci:publish"  # runs whenever training does, also after a REJECT (when: always)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = localci.make_project(tmp_path_factory.mktemp("rules") / "repo")
    localci.git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")  # nothing changed yet
    return repo


def _append(repo, rel, text="\n"):
    with open(repo / rel, "a") as fh:
        fh.write(text)


CASES = {
    # The full pipeline table is tests/test_rules.py; here: the drift-triggered retrain (an API
    # pipeline with the monitor's variables) and the freeze, plus the deploy jobs' GitLab settings.
    "retrain triggered by drift": (
        lambda r: None, {"FORCE_RETRAIN": "true", "MODELCI_DRIFT_RETRAIN": "true", "CI_PIPELINE_SOURCE": "api"}, [],
        {TRAIN: "on_success", GATE: "on_success", BUILD: "on_success", PUBLISH: "always", STAGING: "on_success",
         PROD: "manual"}),
    "deploy freeze, data changed": (
        lambda r: _append(r, "model/modelci.yml", "# tweak\n"), {"CI_DEPLOY_FREEZE": "true"}, [],
        {TRAIN: "on_success", GATE: "on_success", BUILD: "on_success", PUBLISH: "always"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_pipeline_table(repo, case, registry_stub):
    change, variables, unset, expected = CASES[case]
    localci.git(repo, "checkout", "-q", "--", ".")
    change(repo)
    extra = ["--list-json"] + [a for v in unset for a in ("--unset-variable", v)]
    res = localci.run_pipeline(repo, registry_stub, variables=variables, extra_args=extra)
    localci.git(repo, "checkout", "-q", "--", ".")
    assert res.returncode == 0, res.output[-2000:]
    jobs = {j["name"]: j["when"] for j in localci.listing(res) if j["when"] != "never"}
    assert jobs == expected, f"{case}: {jobs}"


def test_production_is_a_blocking_manual_job_with_its_environment(repo, registry_stub):
    localci.git(repo, "checkout", "-q", "--", ".")
    res = localci.run_pipeline(repo, registry_stub, variables={"FORCE_RETRAIN": "true"}, extra_args=["--list-json"])
    prod = {j["name"]: j for j in localci.listing(res)}[PROD]
    assert prod["when"] == "manual" and prod["allow_failure"] is False
    assert {n["job"] if isinstance(n, dict) else n for n in prod["needs"]} >= {BUILD, STAGING}
    preview = localci.run_pipeline(repo, registry_stub, extra_args=["--preview"])
    doc = yaml.safe_load(preview.output[preview.output.index("\n---\n") + 5:])
    assert doc[PROD]["environment"] == {"name": "production", "url": "$MODELCI_PRODUCTION_URL",
                                        "deployment_tier": "production"}
    assert doc[PROD]["resource_group"] == "production"
    assert doc[STAGING]["environment"]["deployment_tier"] == "staging"
    assert doc[PROD]["rules"][0] == {"if": "$CI_DEPLOY_FREEZE", "when": "never"}


@pytest.fixture(scope="module")
def registry_stub(tmp_path_factory):
    """Loopback GitLab variables for listing (no job runs, so no registry needs to listen)."""
    return localci.LocalGitLab(localci.Registry(localci.free_port(), tmp_path_factory.mktemp("noreg")))
