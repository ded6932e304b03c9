"""The deploy jobs skip a retrain identical to production only on the build job's word (its record
file out/build.env), never on a variable: a pipeline variable MODELCI_IDENTICAL_TO_PRODUCTION=true
would otherwise let a deploy job pass (and GitLab record a deployment) without deploying anything."""
from __future__ import annotations

import argparse

import pytest

from modelci.errors import ModelCIError
from modelci.settings.deploy import DeploySettings
from modelci.steps import deploy as step


def _args(environment: str) -> argparse.Namespace:
    return argparse.Namespace(environment=environment, url="http://127.0.0.1:9", image=None, namespace="t",
                              release_checks="false", ready_timeout=None, proxy_image=None, grpc_port=None,
                              dotenv=None, teardown=False)


def test_a_variable_cannot_claim_identical_to_production(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELCI_IDENTICAL_TO_PRODUCTION", "true")
    s = DeploySettings.from_args(_args("staging"))
    assert s.identical_to_production is False
    with pytest.raises(ModelCIError, match="no image"):  # it goes on to deploy, and needs the build's image
        step.run(s)


def test_the_build_record_skips_the_deploy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "build.env").write_text("MODELCI_IDENTICAL_TO_PRODUCTION=true\nMODELCI_MODEL_VERSION=1.2.0\n")
    monkeypatch.setenv("MODELCI_MODEL_VERSION", "1.2.0")
    s = DeploySettings.from_args(_args("staging"))
    assert s.identical_to_production is True
    result = step.run(s)
    assert result.exit_code == 0 and result.data["status"] == "identical to production"
    assert result.data["deployed"] is False


def test_a_committed_build_record_is_no_reason_to_skip_production(tmp_path, monkeypatch):
    import subprocess

    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "build.env").write_text("MODELCI_IDENTICAL_TO_PRODUCTION=true\n")
    subprocess.run(["git", "add", "-f", "out/build.env"], check=True)
    with pytest.raises(ModelCIError, match="out/build.env"):
        step.run(DeploySettings.from_args(_args("production")))
