"""`modelci publish` against the fake GitLab whose MLflow API is a REAL MLflow server behind it.

What must hold (docs/model-registry.md): every training is one run of the model's experiment with its
params, metrics and job id; each new model of the default branch is one complete version with its
files; a failure at any publishing step leaves no complete-looking version and a retry of the job
ends with exactly one complete version; `registry pull` verifies every file.
"""
from __future__ import annotations

import hashlib
import json
import secrets

import pytest

pytest_plugins = ["gitlab_fake", "mlflow_server"]

from modelci import artifact, cli, gate
from modelci.errors import ModelCIError
from modelci.settings.publish import PublishSettings
from modelci.steps import publish

FILES = ["model.joblib", "model.json", "run.json", "smoke.json", "verdict.json"]


def make_out(root, name, *, seed=0, verdict="PROMOTE", passed=True, build_version=None, train_job="101"):
    """A pipeline's job artifacts as the publish job receives them: train's model/ + run.json, the
    gate's verdict, and (default branch, after a build) the build job's build.env."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    out = root / f"out-{seed}"
    r = np.random.default_rng(seed)
    X = r.normal(size=(60, 2))
    y = (X[:, 0] > 0).astype(int)
    meta = artifact.save_model(out / "model", LogisticRegression(C=1.0 + seed).fit(X, y), {
        "name": name, "version": None, "task": "classification", "data_sha256": "d" * 64,
        "commit": "c0ffee" * 6 + "abcd", "metrics": {"accuracy": 0.9 + seed / 100, "f1_macro": 0.88}})
    (out / "model" / "smoke.json").write_text(json.dumps({"inputs": [{"a": 1.0}], "expected": [1]}))
    (out / "run.json").write_text(json.dumps({
        "run_id": f"20261130T000000Z-{seed:08x}", "job_id": train_job, "pipeline_id": "555",
        "commit": "c0ffee" * 6 + "abcd", "data": {"sha256": "d" * 64},
        "config": {"model": {"name": name, "major": 1}, "seed": 7, "estimator": {
            "class": "sklearn.linear_model.LogisticRegression", "params": {"C": 1.0 + seed, "max_iter": 1000}},
            "holdout": {"fraction": 0.25}, "data": {"files": ["x.csv"]}, "gate": {"primary_metric": "accuracy"}},
        "seeded_params": {"random_state": 7}, "best_params": None,
        "metrics": {"accuracy": 0.9 + seed / 100, "f1_macro": 0.88, "n": 3}}))
    (out / "gate").mkdir()
    (out / "gate" / "verdict.json").write_text(json.dumps({
        "schema": gate.VERDICT_SCHEMA, "verdict": verdict, "passed": passed, "dry_run": False,
        "sha256": meta["sha256"]}))
    if build_version:
        digest = "sha256:" + hashlib.sha256(f"{name}{build_version}".encode()).hexdigest()
        (out / "build.env").write_text(
            f"MODELCI_IMAGE=127.0.0.1:5000/g/p/serving@{digest}\nMODELCI_IMAGE_DIGEST={digest}\n"
            f"MODELCI_MODEL_VERSION={build_version}\nMODELCI_MODEL_SHA256={meta['sha256']}\n")
    return out, meta


def settings(out, *, backend="gitlab", default_branch=True, job_id="202", mr=None):
    return PublishSettings(backend=backend, config="absent.yml", source=str(out), out=str(out / "publish.json"),
                           job_id=job_id, pipeline_id="555", mr_iid=mr, commit="c0ffee" * 6 + "abcd",
                           ref="main" if default_branch else "feature", default_branch=default_branch)


@pytest.fixture
def gl(mlflow_server, fake_gitlab, monkeypatch):
    assert fake_gitlab.ml is not None, "the fake GitLab has no MLflow routes"
    monkeypatch.setenv("MODELCI_GITLAB_RETRIES", "1")
    return fake_gitlab


def model_name():
    return "wine-" + secrets.token_hex(3)


def ml(gl, mlflow_server, name):
    """What the real MLflow server holds for GitLab model `name` of project 42."""
    from fake_gitlab_mlflow import mlflow_name

    ns = gl.ml.ns
    exp = mlflow_server.get("experiments/get-by-name", experiment_name=mlflow_name(ns, 42, f"[model]{name}"))
    runs = mlflow_server.post("runs/search", {"experiment_ids": [exp["experiment"]["experiment_id"]],
                                              "max_results": 1000}).get("runs", [])
    versions = [v for v in gl.ml.state["versions"].values() if v["name"] == name and v["project"] == 42]
    return runs, versions


def tags(run):
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def version_runs(runs, versions):
    ids = {v["run_id"] for v in versions}
    return [r for r in runs if r["info"]["run_id"] in ids], [r for r in runs if r["info"]["run_id"] not in ids]


def test_merge_request_training_is_one_candidate_run(gl, mlflow_server, tmp_path):
    name = model_name()
    out, meta = make_out(tmp_path, name, verdict="REJECT", passed=False)
    first = publish.run(settings(out, default_branch=False, mr="7")).data
    again = publish.run(settings(out, default_branch=False, mr="7")).data  # a retried job: nothing twice
    assert first["version"] is None and again["run"]["run_id"] == first["run"]["run_id"]
    runs, versions = ml(gl, mlflow_server, name)
    assert versions == [] and len(runs) == 1
    run = runs[0]
    t = tags(run)
    assert t["gitlab.CI_JOB_ID"] == "101"  # the training job, not the publish job
    assert t["modelci.verdict"] == "REJECT" and t["modelci.verdict_passed"] == "false"
    assert t["modelci.data_sha256"] == "d" * 64 and t["modelci.commit"] == "c0ffee" * 6 + "abcd"
    assert t["modelci.merge_request_iid"] == "7" and t["modelci.pipeline_id"] == "555"
    assert t["modelci.model_sha256"] == meta["sha256"]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["estimator.params.C"] == "1.0" and params["seed"] == "7" and params["seeded.random_state"] == "7"
    assert "gate.primary_metric" not in params and "data.files" not in params
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics == {"accuracy": 0.9, "f1_macro": 0.88, "n": 3.0}
    assert run["info"]["status"] == "FINISHED"


def test_default_branch_new_model_is_one_complete_version(gl, mlflow_server, tmp_path, capsys):
    name = model_name()
    out, meta = make_out(tmp_path, name, build_version="1.0.0")
    result = publish.run(settings(out)).data
    assert result["version"]["uploaded"] == ["model.joblib", "smoke.json", "run.json", "verdict.json", "model.json"]
    runs, versions = ml(gl, mlflow_server, name)
    assert len(versions) == 1 and versions[0]["semver"] == "1.0.0"
    vruns, training = version_runs(runs, versions)
    assert len(training) == 1 and len(vruns) == 1
    vt = tags(vruns[0])
    assert vt["modelci.published"] == "true" and vt["gitlab.CI_JOB_ID"] == "202"  # linked to the publish job
    assert vt["modelci.image_digest"].startswith("sha256:") and vt["modelci.image"].endswith(vt["modelci.image_digest"])
    assert vt["modelci.training_run"] == training[0]["info"]["run_id"]
    assert {m["key"] for m in vruns[0]["data"]["metrics"]} == {"accuracy", "f1_macro"}
    assert {p["key"]: p["value"] for p in vruns[0]["data"]["params"]}["estimator.params.C"] == "1.0"
    # the MLflow model version carries GitLab's semver tag and the files' sha256
    from fake_gitlab_mlflow import mlflow_name

    mv = mlflow_server.get("model-versions/get", name=mlflow_name(gl.ml.ns, 42, name),
                           version=versions[0]["mlflow_version"])["model_version"]
    mvt = {t["key"]: t["value"] for t in mv["tags"]}
    assert mvt["gitlab.version"] == "1.0.0" and mvt["modelci.model_sha256"] == meta["sha256"]
    files = gl.ml.files_of(42, versions[0]["id"])
    assert sorted(files) == FILES
    assert json.loads(mvt["modelci.files"]) == {n: f["sha256"] for n, f in files.items()}
    # `registry pull` through the CLI verifies every file and writes a loadable model directory
    pulled = tmp_path / "pulled"
    assert cli.main(["registry", "pull", "--name", name, "--version", "latest", "--out", str(pulled)]) == 0
    assert json.loads(capsys.readouterr().out)["sha256"] == meta["sha256"]
    assert artifact.verify_model(pulled)["version"] == "1.0.0"
    assert {p.name for p in pulled.iterdir()} >= set(FILES)
    # a second publish of the same pipeline changes nothing
    assert publish.run(settings(out)).data["version"]["already_complete"] is True
    assert len(ml(gl, mlflow_server, name)[0]) == 2


@pytest.mark.parametrize("step, path", [
    ("registry version", "model-versions/create"),
    ("run values", "runs/log-batch"),
    ("file upload", "/files/run.json"),
    ("completion tag", "runs/set-tag"),
])
def test_each_failed_step_then_a_retry_ends_with_one_complete_version(gl, mlflow_server, tmp_path, step, path):
    name = model_name()
    out, meta = make_out(tmp_path, name, build_version="1.3.0")
    calls = 1 if path != "runs/log-batch" else 2  # log-batch: the training run's call, then the version's
    gl.fail_next(calls, status=500, path_contains=path) if calls == 1 else None
    if calls == 2:
        publish.run(settings(out, default_branch=False))  # the training run exists already
        gl.fail_next(1, status=500, path_contains=path)
    with pytest.raises(ModelCIError, match="500"):
        publish.run(settings(out))
    # nothing a reader would take: the version is absent or incomplete
    with pytest.raises(ModelCIError, match="does not exist|incomplete"):
        cli_pull(name, "1.3.0", tmp_path / "early")
    assert not (tmp_path / "early").exists()
    publish.run(settings(out))  # the retried job
    runs, versions = ml(gl, mlflow_server, name)
    assert [v["semver"] for v in versions] == ["1.3.0"], step
    vruns, training = version_runs(runs, versions)
    assert len(vruns) == 1 and len(training) == 1
    assert tags(vruns[0])["modelci.published"] == "true"
    assert sorted(gl.ml.files_of(42, versions[0]["id"])) == FILES
    assert cli_pull(name, "1.3.0", tmp_path / "pulled")["sha256"] == meta["sha256"]


def test_no_build_record_no_version_until_the_build_is_retried(gl, mlflow_server, tmp_path, monkeypatch, capsys):
    """The image push failed: the build job left no build.env, so publish makes no version; once the
    build is retried (its build.env exists), one complete version."""
    name = model_name()
    out, meta = make_out(tmp_path, name)
    assert publish.run(settings(out)).data["version"] is None
    assert ml(gl, mlflow_server, name)[1] == []
    digest = "sha256:" + "e" * 64  # the retried build pushed the image and wrote its record
    (out / "build.env").write_text(f"MODELCI_IMAGE=127.0.0.1:5000/g/p/serving@{digest}\nMODELCI_IMAGE_DIGEST="
                                   f"{digest}\nMODELCI_MODEL_VERSION=1.0.0\nMODELCI_MODEL_SHA256={meta['sha256']}\n")
    # the retried pipeline's publish job, as the component runs it: `modelci publish` with GitLab's variables
    for k, v in {"CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main", "CI_JOB_ID": "303",
                 "CI_PIPELINE_ID": "556", "MODELCI_PUBLISH_FROM": str(out),
                 "MODELCI_PUBLISH_OUT": str(tmp_path / "publish.json")}.items():
        monkeypatch.setenv(k, v)
    assert cli.main(["publish"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["version"]["version"] == "1.0.0" and printed == json.loads((tmp_path / "publish.json").read_text())
    runs, versions = ml(gl, mlflow_server, name)
    assert len(versions) == 1 and len(runs) == 2  # one training run, one version run


def test_versions_are_immutable_and_need_a_passing_verdict(gl, mlflow_server, tmp_path):
    name = model_name()
    out, _ = make_out(tmp_path, name, build_version="2.0.0")
    publish.run(settings(out))
    other, _ = make_out(tmp_path, name, seed=1, build_version="2.0.0")
    with pytest.raises(ModelCIError, match="already holds another model"):
        publish.run(settings(other))
    rejected, _ = make_out(tmp_path, name, seed=2, build_version="2.1.0", verdict="REJECT", passed=False)
    with pytest.raises(ModelCIError, match="does not allow"):
        publish.run(settings(rejected))
    assert [v["semver"] for v in ml(gl, mlflow_server, name)[1]] == ["2.0.0"]


def test_pull_verifies_every_file_and_never_replaces_foreign_directories(gl, mlflow_server, tmp_path):
    name = model_name()
    out, _ = make_out(tmp_path, name, build_version="1.0.0")
    publish.run(settings(out))
    version = ml(gl, mlflow_server, name)[1][0]
    # corrupt one stored file: the pull fails and writes nothing
    key = f"42/{version['id']}/smoke.json"
    target = gl.ml.store / "files" / gl.ml.ns / hashlib.sha256(key.encode()).hexdigest()
    good = target.read_bytes()
    target.write_bytes(good + b" ")
    with pytest.raises(ModelCIError, match="smoke.json: sha256 .* does not match the recorded"):
        cli_pull(name, "1.0.0", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    target.write_bytes(good)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ModelCIError, match="not empty and was not made by"):
        cli_pull(name, "1.0.0", foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    cli_pull(name, "1.0.0", tmp_path / "again")
    cli_pull(name, "1.0.0", tmp_path / "again")  # a directory an earlier pull made may be replaced


def test_generic_choice_still_writes_generic_packages(gl, tmp_path, capsys, monkeypatch):
    name = model_name()
    out, meta = make_out(tmp_path, name, build_version="1.0.0")
    result = publish.run(settings(out, backend="generic")).data
    assert result["run"] is None and result["version"]["version"] == "1.0.0"
    assert [p["version"] for p in gl.packages if p["name"] == name] == ["1.0.0"]
    assert not gl.ml.calls  # generic: no MLflow call at all
    monkeypatch.setenv("MODELCI_MODEL_REGISTRY", "generic")
    assert cli.main(["registry", "pull", "--name", name, "--version", "1.0.0", "--out", str(tmp_path / "g")]) == 0
    assert json.loads(capsys.readouterr().out)["sha256"] == meta["sha256"]
    assert publish.run(settings(out, backend="none")).data == {"registry": "none", "run": None, "version": None,
                                                               "note": None}


def cli_pull(name, version, out):
    from modelci.settings.registry import RegistrySettings
    from modelci.steps import registry as step

    return step.run(RegistrySettings(action="pull", backend="gitlab", name=name, config="absent.yml",
                                     version=version, out=str(out))).data


def test_the_fake_follows_gitlabs_rules_not_mlflows(gl, mlflow_server):
    """The stand-in is strict where GitLab is (its docs), so publish cannot pass here and fail there."""
    import requests

    base = f"{gl.api_url}/projects/42/ml/mlflow/api/2.0/mlflow"

    def call(method, endpoint, token="glpat-test-api-token", header="Authorization", **kw):
        headers = {} if token is None else {header: f"Bearer {token}" if header == "Authorization" else token}
        return requests.request(method, f"{base}/{endpoint}", headers=headers, timeout=30, **kw)

    name = model_name()
    assert call("GET", "registered-models/get", token=None, params={"name": name}).status_code == 401
    assert call("GET", "registered-models/get", token="nope", params={"name": name}).status_code == 401
    assert call("GET", "registered-models/get", token="job-token-123", header="JOB-TOKEN",
                params={"name": name}).status_code == 401  # CI_JOB_TOKEN cannot use this API
    missing = call("GET", "registered-models/get", token="glpat-read-only", params={"name": name})
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert call("POST", "registered-models/create", token="glpat-read-only", json={"name": name}).status_code == 403
    assert call("POST", "registered-models/create", token="glpat-reporter", json={"name": name}).status_code == 401
    assert call("GET", "registered-models/get", token="glpat-other-project", params={"name": name}).status_code == 404
    for method, endpoint in (("POST", "model-versions/search"), ("GET", "registered-models/search"),
                             ("POST", "runs/log-inputs"), ("POST", "registered-models/set-tag")):
        assert call(method, endpoint, json={}).status_code == 404, endpoint
    assert call("POST", "registered-models/create", json={"name": name, "tags": [{"key": "k", "value": "v"}]}).ok
    bad = call("POST", "model-versions/create", json={"name": name, "tags": [{"key": "gitlab.version", "value": "v1"}]})
    assert bad.status_code == 400 and "semantic" in bad.json()["message"]
    made = call("POST", "model-versions/create", json={"name": name, "tags": [{"key": "gitlab.version", "value": "1.2.0"}]})
    mv = made.json()["model_version"]
    assert mv["aliases"] == ["1.2.0"] and mv["version"].isdigit() and mv["version"] != "1.2.0"
    assert call("POST", "model-versions/create", json={"name": name, "tags": [
        {"key": "gitlab.version", "value": "1.2.0"}]}).status_code == 400  # an existing version
    assert call("GET", "model-versions/get", params={"name": name, "version": "1.2.0"}).json()[
        "model_version"]["run_id"] == mv["run_id"]
    run = call("GET", "runs/get", params={"run_id": mv["run_id"]}).json()["run"]
    assert run["info"]["artifact_uri"].endswith(f"/projects/42/packages/ml_models/{mv['version']}/files/")
    assert call("POST", "runs/set-tag", json={"run_id": mv["run_id"], "key": "gitlab.CI_JOB_ID",
                                              "value": "not-a-job"}).status_code == 400
    assert call("POST", "runs/set-tag", json={"run_id": mv["run_id"], "key": "a", "value": "1"}).ok
    assert call("POST", "runs/set-tag", json={"run_id": mv["run_id"], "key": "a", "value": "1"}).status_code == 400
    assert call("POST", "runs/log-parameter", json={"run_id": mv["run_id"], "key": "p", "value": "1"}).ok
    assert call("POST", "runs/log-parameter", json={"run_id": mv["run_id"], "key": "p", "value": "1"}).status_code == 400
    assert call("POST", "runs/log-batch", json={"run_id": mv["run_id"], "params": [{"key": "p", "value": "2"}],
                                                "tags": [{"key": "a", "value": "2"}]}).ok  # already set: ignored
    files = f"{gl.api_url}/projects/42/packages/ml_models"
    auth = {"Authorization": "Bearer glpat-test-api-token"}
    assert requests.put(f"{files}/{mv['version']}/files/x.bin", data=b"x",
                        headers={"Authorization": "Bearer glpat-read-only"}, timeout=10).status_code == 403
    assert requests.put(f"{files}/999999/files/x.bin", data=b"x", headers=auth, timeout=10).status_code == 404
    assert requests.put(f"{files}/{mv['version']}/files/x.bin", data=b"xyz", headers=auth, timeout=10).ok
    assert requests.get(f"{files}/{mv['version']}/files/x.bin", headers=auth, timeout=10).content == b"xyz"


def test_publish_posts_the_gate_note_and_links_it_in_the_annotations_report(tmp_path, monkeypatch, fake_gitlab):
    """The gate job holds no GitLab write token: the publish job posts its evidence as the commit note
    (also with model_registry none) and lists the note in GitLab's annotations report (Free tier)."""
    import dataclasses
    import json as _json
    import shutil as _shutil
    from pathlib import Path

    from test_report import gate_dir

    src = tmp_path / "out"
    src.mkdir()
    _shutil.copytree(gate_dir(tmp_path / "g"), src / "gate")
    s = dataclasses.replace(settings(src, backend="none"), report=True,
                            project_url="http://gitlab.example/group/project")
    data = publish.run(s).data
    assert data["note"]["action"] == "created" and data["note"]["note_id"]
    notes = [n for d in fake_gitlab.discussions[f"42@{s.commit}"] for n in d["notes"]]
    assert len(notes) == 1 and "modelci-report" in notes[0]["body"]
    links = _json.loads((Path(s.out).with_name("annotations.json")).read_text())["modelci"]
    assert links == [{"external_link": {"label": "gate report (note)", "url":
                      f"http://gitlab.example/group/project/-/commit/{s.commit}#note_{data['note']['note_id']}"}}]
