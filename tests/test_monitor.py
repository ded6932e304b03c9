"""`modelci monitor` against real serving-app processes fed unshifted and shifted inputs, with the
strict fake GitLab receiving the drift issue and, when the config's monitor.on_drift asks, the
retraining trigger."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from modelci import monitor as mon
from modelci.artifact import save_model
from modelci.cli import main
from modelci.training import feature_stats

pytest_plugins = ["gitlab_fake"]  # the fake_gitlab fixture

ROOT = Path(__file__).resolve().parent.parent
CONFIG = {"features": {"numeric": ["size", "weight"], "categorical": ["colour"], "text": []}}


def _data(rng, n, shift=False):
    colours = ["red", "green", "blue"]
    X = pd.DataFrame({
        "size": rng.normal(5.0 + (3.0 if shift else 0.0), 1.0, n),
        "weight": rng.uniform(0.0, 10.0, n),
        "colour": rng.choice(colours, n, p=[0.1, 0.1, 0.8] if shift else [0.5, 0.3, 0.2]),
    })
    return X


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(7)
    X = _data(rng, 2000)
    y = np.where(X["size"] + (X["colour"] == "red") > 5.3, "big", "small")
    model = Pipeline([("prep", ColumnTransformer([("c", OneHotEncoder(handle_unknown="ignore"), ["colour"])],
                                                 remainder="passthrough")),
                      ("clf", LogisticRegression(max_iter=500))]).fit(X, y)
    d = tmp_path_factory.mktemp("monitor") / "model"
    save_model(d, model, {
        "name": "fruit", "version": "1.2.0", "task": "classification", "target": "label",
        "inputs": [{"name": "size", "kind": "numeric", "datatype": "FP64"},
                   {"name": "weight", "kind": "numeric", "datatype": "FP64"},
                   {"name": "colour", "kind": "categorical", "datatype": "BYTES"}],
        "outputs": [{"name": "predict", "datatype": "BYTES"}], "classes": ["big", "small"],
        "run_id": "run-fruit", "commit": "0123456789abcdef", "data_sha256": "d" * 64, "metrics": {},
        "feature_stats": feature_stats(CONFIG, X), "trained_at": "2026-01-02T03:04:05Z"})
    return d


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def apps(model_dir):
    """Two production apps serving the model: one fed inputs like the training data, one shifted."""
    procs, urls = [], {}
    for name in ("same", "shifted"):
        port = _free_port()
        env = {**os.environ, "MODELCI_MODEL_DIR": str(model_dir), "PORT": str(port), "HOST": "127.0.0.1",
               "PYTHONPATH": str(ROOT), "MODELCI_LOG_LEVEL": "warning"}
        procs.append(subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        urls[name] = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        for url in urls.values():
            while True:
                try:
                    if requests.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                assert time.time() < deadline, "serving app not ready"
                time.sleep(0.1)
        rng = np.random.default_rng(99)
        for name, shift in (("same", False), ("shifted", True)):
            X = _data(rng, 600, shift=shift)
            for chunk in range(0, len(X), 100):
                rows = X.iloc[chunk:chunk + 100].to_dict("records")
                assert requests.post(urls[name] + "/predict", json=rows, timeout=10).status_code == 200
        yield urls
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def _run(capsys, *argv):
    code = main(["monitor", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no model/modelci.yml here: default policy unless --config is given
    for var in ("MODELCI_CONFIG", "MODELCI_PRODUCTION_URL", "CI_DEFAULT_BRANCH", "MODELCI_IMAGE_REPO"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _pipeline_calls(fake):
    return [r for r in fake.requests if r["route"] == "pipeline_create"]


def test_unshifted_inputs_do_not_drift(apps, model_dir, fake_gitlab, capsys, workdir):
    code, report, err = _run(capsys, "--production-url", apps["same"], "--model", str(model_dir))
    assert code == 0, err
    assert report["status"] == "ok" and report["drifted_features"] == []
    assert {f["feature"]: f["status"] for f in report["features"]} == \
        {"size": "ok", "weight": "ok", "colour": "ok"}
    assert all(f["statistic"] < 0.1 for f in report["features"])
    assert report["model"]["version"] == "1.2.0"
    # a clean check only looks for an open drift issue to close (monitor.on_drift: [issue] by default)
    assert _pipeline_calls(fake_gitlab) == []
    assert [(r["method"], r["route"]) for r in fake_gitlab.requests] == [("GET", "issues")]
    assert report["issue"] == {"action": "none", "iid": None, "web_url": None}
    saved = json.loads((workdir / "out/monitor/drift.json").read_text())
    assert saved["status"] == "ok"
    assert "No feature drifted" in (workdir / "out/monitor/drift.md").read_text()


def _config(workdir, on_drift=None, extra=""):
    cfg = workdir / "modelci.yml"
    monitor = f"monitor: {{on_drift: [{', '.join(on_drift)}]{extra}}}\n" if on_drift is not None else ""
    cfg.write_text("model: {name: fruit}\ndata: {files: [d.csv]}\ntarget: label\n"
                   "features: {numeric: [size, weight], categorical: [colour]}\n" + monitor)
    return str(cfg)


def test_shifted_inputs_drift_and_trigger_one_retrain(apps, model_dir, fake_gitlab, capsys, workdir):
    code, report, err = _run(capsys, "--production-url", apps["shifted"], "--model", str(model_dir),
                             "--config", _config(workdir, ["issue", "retrain"]))
    assert code == 0, err
    assert report["status"] == "triggered" and report["on_drift"] == ["issue", "retrain"]
    assert sorted(report["drifted_features"]) == ["colour", "size"]  # weight was not shifted
    weight = next(f for f in report["features"] if f["feature"] == "weight")
    assert not weight["drift"] and weight["statistic"] < 0.1
    size = next(f for f in report["features"] if f["feature"] == "size")
    assert size["mean_shift_sd"] > 2.5
    (call,) = _pipeline_calls(fake_gitlab)
    assert call["method"] == "POST" and call["status"] == 201
    (pipeline,) = fake_gitlab.projects[42]["pipelines"]
    assert pipeline["ref"] == "main"
    # no pipeline variables: the retrain is recognised by $CI_PIPELINE_SOURCE == "api" (they may be blocked)
    assert not pipeline.get("variables")
    assert report["trigger"]["id"] == pipeline["id"]
    (issue,) = fake_gitlab.projects[42]["issues"]
    assert report["issue"]["action"] == "opened" and report["issue"]["iid"] == issue["iid"]
    assert f"-/pipelines/{pipeline['id']}" in issue["description"]  # the issue names the retrain
    md = (workdir / "out/monitor/drift.md").read_text()
    assert "triggered" in md and "**drift**" in md and issue["web_url"] in md


def test_drift_opens_an_issue_without_retraining_by_default(apps, model_dir, fake_gitlab, capsys, workdir,
                                                           monkeypatch):
    fake_gitlab.add_token("glpat-dev", scopes=["api"], role="developer")
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-dev")
    code, report, err = _run(capsys, "--production-url", apps["shifted"], "--model", str(model_dir),
                             "--config", _config(workdir))
    assert code == 0, err
    assert report["status"] == "drift" and report["on_drift"] == ["issue"] and report["trigger"] is None
    assert _pipeline_calls(fake_gitlab) == []
    (issue,) = fake_gitlab.projects[42]["issues"]
    assert issue["labels"] == ["modelci::drift"] and issue["title"] == "Input drift: fruit in production"
    desc = issue["description"]
    assert "| `size` | numeric |" in desc and "**drift**" in desc
    (upload,) = fake_gitlab.uploads  # the histograms of the drifted features, embedded in the issue
    assert upload["sha256"] and "/uploads/" in desc and "drift.png" in desc
    assert (workdir / "out/monitor/drift.png").exists()
    assert f"{fake_gitlab.url}/group/project/-/environments?search=production" in desc
    assert f"Model version fruit 1.2.0: {apps['shifted']}/lineage" in desc
    assert "Trained from commit: " in desc and "/-/commit/0123456789abcdef" in desc
    saved = json.loads((workdir / "out/monitor/drift.json").read_text())
    assert saved["issue"] == report["issue"] and saved["issue"]["action"] == "opened"

    # a second drifted check updates the same issue; a clean one (same model) closes it
    code, again, err = _run(capsys, "--production-url", apps["shifted"], "--model", str(model_dir))
    assert code == 0, err
    assert again["issue"]["action"] == "updated" and again["issue"]["iid"] == issue["iid"]
    code, clean, err = _run(capsys, "--production-url", apps["same"], "--model", str(model_dir))
    assert code == 0, err
    assert clean["status"] == "ok" and clean["issue"]["action"] == "closed"
    assert [i["state"] for i in fake_gitlab.projects[42]["issues"]] == ["closed"]
    assert _pipeline_calls(fake_gitlab) == []


def test_an_unknown_or_repeated_on_drift_value_is_refused(apps, model_dir, capsys, workdir):
    code, _, err = _run(capsys, "--production-url", apps["same"], "--model", str(model_dir),
                        "--config", _config(workdir, ["issue", "page"]))
    assert code == 1 and "monitor.on_drift[1]: 'page' is not valid; use one of issue, retrain" in err
    code, _, err = _run(capsys, "--production-url", apps["same"], "--model", str(model_dir),
                        "--config", _config(workdir, ["retrain", "retrain"]))
    assert code == 1 and "monitor.on_drift: ['retrain', 'retrain'] lists a value twice" in err


def test_no_trigger_and_ks_method_from_config(apps, model_dir, fake_gitlab, capsys, workdir):
    cfg = workdir / "modelci.yml"
    cfg.write_text("model: {name: fruit}\ndata: {files: [d.csv]}\ntarget: label\n"
                   "features: {numeric: [size, weight], categorical: [colour]}\n"
                   "monitor: {method: ks, drift_threshold: 0.15, on_drift: [issue, retrain]}\n")
    code, report, err = _run(capsys, "--production-url", apps["shifted"], "--model", str(model_dir),
                             "--config", str(cfg), "--no-trigger", "--out", "drift")
    assert code == 0, err
    assert report["status"] == "drift" and report["method"] == "ks" and report["threshold"] == 0.15
    assert "size" in report["drifted_features"]
    assert fake_gitlab.requests == []  # --no-trigger: report only, whatever on_drift lists
    assert report["on_drift"] == [] and report["issue"] is None
    assert (workdir / "drift/drift.json").exists()


def test_too_few_rows_is_not_drift(apps, model_dir, fake_gitlab, capsys, workdir):
    code, report, err = _run(capsys, "--production-url", apps["shifted"], "--model", str(model_dir),
                             "--min-rows", "100000")
    assert code == 0, err
    assert report["status"] == "insufficient-data" and not report["drift"]
    assert fake_gitlab.requests == []


def test_statistics_of_another_model_are_refused(apps, model_dir, capsys, workdir, tmp_path):
    rr = tmp_path / "run.json"
    rr.write_text(json.dumps({"feature_stats": {"size": {"kind": "numeric"}}, "model": {"sha256": "f" * 64}}))
    code, _, err = _run(capsys, "--production-url", apps["same"], "--run-record", str(rr))
    assert code == 1 and "production serves" in err and "ffffffffffff" in err


def test_unreachable_production_is_an_error(capsys, workdir, model_dir):
    code, _, err = _run(capsys, "--production-url", f"http://127.0.0.1:{_free_port()}", "--model", str(model_dir))
    assert code == 1 and "cannot reach" in err


def test_statistics_functions():
    assert mon.psi([10, 10], [10, 10]) == pytest.approx(0.0)
    assert mon.psi([50, 50], [90, 10]) > 0.2
    assert mon.ks_binned([1, 1, 1, 1], [0, 0, 2, 2]) == pytest.approx(0.5)
    assert mon.tvd([1, 1], [1, 0]) == pytest.approx(0.5)


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["monitor", "--help"])
    assert exc.value.code == 0 and "triggered" in capsys.readouterr().out
