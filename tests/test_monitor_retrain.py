"""The retrain the drift monitor starts, on unchanged data: the training job does not reuse the
cached model (an API pipeline on the default branch counts as FORCE_RETRAIN, without any variable),
and the build step finds the model identical to production's and builds, pushes and registers
nothing ("identical to production", a dotenv the deploy jobs read)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fixtures.trainkit import numeric_config, numeric_frame, run, write_project
from modelci import artifact, champion, dockerutil
from modelci.errors import ModelCIError


@pytest.fixture
def ci_env(monkeypatch):
    for name in ("FORCE_RETRAIN", "MODELCI_CACHE_DIR", "CI_PIPELINE_SOURCE", "CI_COMMIT_BRANCH",
                 "CI_DEFAULT_BRANCH", "MODELCI_PRODUCTION_URL", "MODELCI_IMAGE_REPO", "MODELCI_BUILD_DOTENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CI_DEFAULT_BRANCH", "main")
    return monkeypatch


@pytest.fixture
def trained(tmp_path, capsys, ci_env):
    path = write_project(tmp_path, numeric_config(), {"data.csv": numeric_frame()})
    cache = tmp_path / "cache"
    code, first, err = run(capsys, "train", "--config", path, "--out", tmp_path / "o1", "--cache-dir", cache)
    assert code == 0 and first["reused"] is False, err
    return path, cache, first


@pytest.mark.parametrize("source, branch, reused", [("push", "main", True), ("schedule", "main", True),
                                                     ("api", "feature", True), ("api", "main", False)])
def test_an_api_pipeline_on_the_default_branch_retrains(trained, tmp_path, capsys, ci_env, source, branch, reused):
    path, cache, first = trained
    ci_env.setenv("CI_PIPELINE_SOURCE", source)
    ci_env.setenv("CI_COMMIT_BRANCH", branch)
    ci_env.setenv("CI_PIPELINE_ID", "777")
    code, again, err = run(capsys, "train", "--config", path, "--out", tmp_path / "o2", "--cache-dir", cache)
    assert code == 0, err
    assert again["reused"] is reused
    record = json.loads((tmp_path / "o2" / "run.json").read_text())
    if reused:
        assert again["run_id"] == first["run_id"] and record["pipeline_id"] != "777"
    else:
        assert "an API pipeline on the default branch main: a retrain" in err
        assert record["reused"] is False and record["pipeline_id"] == "777" and record["run_id"] != first["run_id"]
        # same rows, same seed: the same model, which the build step then recognises
        assert again["model_sha256"] == first["model_sha256"] and again["reuse_key"] == first["reuse_key"]


# ---- build: identical to production ----------------------------------------------------------------
class _Production:
    """A stand-in for production's serving app: GET /lineage only."""

    def __init__(self, lineage: dict):
        body = json.dumps(lineage).encode()

        class H(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                status, data = (200, body) if self.path == "/lineage" else (404, b"{}")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def no_docker(monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise ModelCIError("docker must not be used")

    monkeypatch.setattr(dockerutil, "client", refuse)
    return calls


def _build(capsys, tmp_path, model_dir, url):
    root = Path(__file__).resolve().parents[1]
    return run(capsys, "build", "--config", tmp_path / "model" / "modelci.yml", "--model", model_dir,
               "--image", "127.0.0.1:9/group/project/serving", "--production-url", url,
               "--verdict", tmp_path / "none.json", "--dotenv", tmp_path / "build.env", "--context", root)


def test_a_model_identical_to_production_is_not_built(trained, tmp_path, capsys, no_docker):
    _, _, first = trained
    model_dir = tmp_path / "o1" / "model"
    meta = artifact.read_meta(model_dir)
    prod = _Production({"name": meta["name"], "model_version": "1.4.0", "sha256": meta["sha256"]})
    try:
        code, out, err = _build(capsys, tmp_path, model_dir, prod.url)
    finally:
        prod.server.shutdown()
    assert code == 0, err
    assert out["status"] == "identical to production" and out["identical_to_production"] is True
    assert out["model_version"] == "1.4.0" and out["image"] is None and out["tags"] == []
    assert "identical to production: same model sha256" in err
    assert no_docker == []  # no build, no push, no registry tags listed
    env = dict(line.split("=", 1) for line in (tmp_path / "build.env").read_text().splitlines())
    assert env == {"MODELCI_IDENTICAL_TO_PRODUCTION": "true", "MODELCI_MODEL_VERSION": "1.4.0",
                   "MODELCI_MODEL_SHA256": meta["sha256"]}  # no MODELCI_IMAGE: nothing to deploy


def test_a_different_model_is_built(trained, tmp_path, capsys, no_docker):
    model_dir = tmp_path / "o1" / "model"
    prod = _Production({"name": "m", "model_version": "1.4.0", "sha256": "f" * 64})
    try:
        code, _, err = _build(capsys, tmp_path, model_dir, prod.url)
    finally:
        prod.server.shutdown()
    assert code != 0 and len(no_docker) == 1  # went on to build (refused here)
    assert not (tmp_path / "build.env").exists()


def test_same_reuse_key_counts_when_training_is_not_byte_stable(trained, tmp_path, capsys, no_docker,
                                                                  monkeypatch):
    model_dir = tmp_path / "o1" / "model"
    meta = artifact.read_meta(model_dir)
    record_path = tmp_path / "o1" / "run.json"
    record = json.loads(record_path.read_text())
    record["model"]["deterministic"] = False
    record_path.write_text(json.dumps(record))
    champ_meta = dict(meta, sha256="e" * 64)  # production's model: other bytes, same inputs

    def fetch(url, repo, out_dir):
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / artifact.META_FILE).write_text(json.dumps(champ_meta))
        return {"dir": str(out_dir), "version": "1.4.0"}

    monkeypatch.setattr(champion, "fetch", fetch)
    prod = _Production({"name": meta["name"], "model_version": "1.4.0", "sha256": "e" * 64})
    try:
        code, out, err = _build(capsys, tmp_path, model_dir, prod.url)
        assert code == 0 and out["reason"] == "same reuse key (training is not byte-stable)", err
        champ_meta["reuse_key"] = "0" * 64  # other inputs: a new model
        code, _, err = _build(capsys, tmp_path, model_dir, prod.url)
        assert code != 0 and len(no_docker) == 1
    finally:
        prod.server.shutdown()
