"""The trusted champion (issue 12 part 2): named only by GitLab's production deployment record and
production's /lineage at GitLab's URL, fetched by digest (the model layer only), verified before any
unpickling; never "highest semver tag"."""
from __future__ import annotations

import hashlib
import json

import pytest

from gitlab_fake import fake_gitlab  # noqa: F401 - fixture
from modelci import champion, cli
from modelci.errors import ModelCIError
from test_trust import COMMIT, Lineage, oci_registry  # noqa: F401 - fixtures

PICKLE = b"model bytes standing for a pickle"
SHA = hashlib.sha256(PICKLE).hexdigest()


@pytest.fixture
def prod(fake_gitlab, oci_registry, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.delenv("MODELCI_GITLAB_TOKEN")
    monkeypatch.setenv("CI_JOB_TOKEN", "job-token-123")
    monkeypatch.chdir(tmp_path)
    lin = Lineage()
    files = {"model.joblib": PICKLE, "model.json": json.dumps({"sha256": SHA, "version": "1.2.0"}).encode(),
             "smoke.json": b'{"inputs": [], "expected": []}'}
    ref, _ = oci_registry("prod", model_sha=SHA, files=files)
    yield fake_gitlab, lin, ref, oci_registry
    lin.srv.shutdown()


def test_a_project_that_never_deployed_has_no_champion(prod, tmp_path):
    assert champion.fetch(None, None, tmp_path / "out" / "champion") is None
    assert not (tmp_path / "out" / "champion").exists()


def test_champion_is_what_production_runs_by_digest(prod, tmp_path):
    fake, lin, ref, reg = prod
    # a registry writer's serving:999.0.0 is never considered: no tag is ever listed
    fake.add_deployment(42, "production", COMMIT, external_url=lin.url)
    lin.body = {"model_version": "1.2.0", "sha256": SHA, "image": ref}
    found = champion.fetch(None, None, tmp_path / "out" / "champion")
    assert found["image"] == ref and found["sha256"] == SHA and found["source"] == "production-deployment"
    assert (tmp_path / "out" / "champion" / "model.joblib").read_bytes() == PICKLE
    assert reg.paths and not [p for p in reg.paths if "tags" in p]  # by digest only, never a tag listing


def test_a_model_that_does_not_match_the_record_is_never_written(prod, tmp_path):
    fake, lin, _, reg = prod
    evil = {"model.joblib": b"import os; os.system('touch marker')",
            "model.json": json.dumps({"sha256": SHA}).encode()}  # claims the trusted sha256
    ref, _ = reg("evil", model_sha=SHA, files=evil)
    fake.add_deployment(42, "production", COMMIT, external_url=lin.url)
    lin.body = {"model_version": "1.2.0", "sha256": SHA, "image": ref}
    with pytest.raises(ModelCIError, match=r"its model file does not match the sha256 the deployment record "
                                           r"names \(.{12}…\); refusing to load it"):
        champion.fetch(None, None, tmp_path / "out" / "champion")
    assert not (tmp_path / "out" / "champion").exists()


def test_a_production_url_variable_cannot_redirect_the_champion(prod, tmp_path, capsys, monkeypatch):
    fake, lin, ref, _ = prod
    fake.add_deployment(42, "production", COMMIT, external_url=lin.url)
    lin.body = {"model_version": "1.2.0", "sha256": SHA, "image": ref}
    monkeypatch.setenv("MODELCI_PRODUCTION_URL", "http://127.0.0.1:9/fake")
    code = cli.main(["champion", "--image", ref.split("@")[0], "--out", "out/champion"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0
    assert err == (f"modelci champion: error: production URL http://127.0.0.1:9/fake: not the URL GitLab records "
                   f"for production ({lin.url}); the champion is read only from GitLab's record, fix the "
                   "production_url input or the environment's url")


def test_production_down_with_a_deployment_fails_the_champion_closed(prod, tmp_path, capsys):
    fake, lin, ref, _ = prod
    fake.add_deployment(42, "production", COMMIT, external_url=lin.url)
    code = cli.main(["champion", "--image", ref.split("@")[0], "--out", "out/champion"])
    assert code != 0
    assert "/lineage does not answer while GitLab records a successful deployment of production" in \
        capsys.readouterr().err
    assert not (tmp_path / "out" / "champion").exists()


def test_committed_outputs_stop_the_champion(prod, tmp_path, capsys):
    import subprocess

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "verdict.json").write_text("{}")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "-f", "out/verdict.json"], check=True)
    code = cli.main(["champion", "--image", "127.0.0.1:1/g/serving", "--out", "out/champion"])
    assert code != 0 and "out/verdict.json: committed to the repository under out/" in capsys.readouterr().err

