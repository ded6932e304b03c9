"""Opt-in checks against a REAL GitLab (never run by default: no GitLab can run on these machines).

  GITLAB_URL=https://gitlab.example.com GITLAB_TOKEN=glpat-… GITLAB_PROJECT=group/sandbox \
  [GITLAB_MR_IID=3] pytest -m real_gitlab tests/test_real_gitlab.py

The token needs the `api` scope (and the Developer role; the model registry test needs GitLab >= 17.6).
The tests push a throw-away package and a throw-away model `modelci-selftest-<random>`
(deleted afterwards) and, with GITLAB_MR_IID, create/update one note on that merge request.
"""
from __future__ import annotations

import json
import os
import secrets

import pytest

from modelci import gitlab_api, report
from modelci.errors import ModelCIError
from modelci.model_registry import ModelRegistry

NEEDED = ("GITLAB_URL", "GITLAB_TOKEN", "GITLAB_PROJECT")
MISSING = [n for n in NEEDED if not os.environ.get(n)]

pytestmark = [
    pytest.mark.real_gitlab,
    pytest.mark.skipif(bool(MISSING), reason=f"opt-in real-GitLab tests: set {', '.join(MISSING)} "
                                             "(a sandbox project and a token with the api scope) to run them"),
]


@pytest.fixture
def real_env(monkeypatch):
    url, token, project = (os.environ[n] for n in NEEDED)
    for var in ("CI_API_V4_URL", "CI_SERVER_URL", "CI_JOB_TOKEN", "GITLAB_TOKEN", "MODELCI_GITLAB_TOKEN_TYPE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MODELCI_GITLAB_URL", url)
    monkeypatch.setenv("MODELCI_GITLAB_PROJECT", project)
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN", token)
    monkeypatch.setenv("MODELCI_GITLAB_RETRIES", "3")


def test_registry_round_trip(real_env, tmp_path):
    from test_registry import make_model

    client = gitlab_api.from_env()
    name = f"modelci-selftest-{secrets.token_hex(4)}"
    registry = ModelRegistry(client, name)
    d, run, v, meta = make_model(tmp_path, name=name)
    try:
        assert registry.next_version(1) == "1.0.0"
        registry.push(d, "1.0.0", run_record=run, verdict=v)
        assert registry.next_version(1) == "1.1.0" and registry.latest() == "1.0.0"
        assert registry.pull("1.0.0", tmp_path / "pulled")["sha256"] == meta["sha256"]
        assert registry.push(d, "1.0.0", run_record=run, verdict=v)["uploaded"] == []
    finally:
        for item in registry.versions():
            client.project.packages.delete(item["package_id"])


def test_bad_token_is_a_clear_error(real_env, monkeypatch):
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-" + "x" * 20)
    with pytest.raises(ModelCIError, match="401"):
        ModelRegistry(gitlab_api.from_env(), "modelci-selftest").latest()


def test_mr_note_updated_in_place(real_env, tmp_path):
    iid = os.environ.get("GITLAB_MR_IID")
    if not iid:
        pytest.skip("set GITLAB_MR_IID to a merge request of GITLAB_PROJECT to test the MR note")
    from test_report import gate_dir

    client = gitlab_api.from_env()
    d = gate_dir(tmp_path, name=f"selftest-{secrets.token_hex(3)}")
    first = report.post_report(client, d, mr_iid=iid)
    second = report.post_report(client, d, mr_iid=iid)
    assert first["action"] == "created" and second["action"] == "updated"
    assert first["note_id"] == second["note_id"]
    print(json.dumps(second))


def test_model_registry_and_experiment_round_trip(real_env, tmp_path):
    """The publish step's MLflow calls against a real GitLab (>= 17.6): a training run, a complete
    version with its files, a retry that changes nothing, `registry pull` verifying every file; the
    throw-away model is deleted afterwards."""
    from modelci.ml_registry import GitLabModelRegistry
    from modelci.steps import publish
    from test_publish import make_out, settings

    name = f"modelci-selftest-{secrets.token_hex(4)}"
    out, meta = make_out(tmp_path, name, build_version="1.0.0", train_job="")
    registry = GitLabModelRegistry(gitlab_api.from_env(), name)
    try:
        result = publish.run(settings(out, job_id=None)).data
        assert result["run"]["created"] and len(result["version"]["uploaded"]) == 5
        again = publish.run(settings(out, job_id=None)).data
        assert again["run"]["run_id"] == result["run"]["run_id"] and again["version"]["already_complete"]
        assert registry.latest() == "1.0.0"
        assert registry.pull("1.0.0", tmp_path / "pulled")["sha256"] == meta["sha256"]
    finally:
        registry.api.call("DELETE", "registered-models/delete", "deleting the self-test model",
                          params={"name": name}, missing_ok=True)
