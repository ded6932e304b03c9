"""`modelci reproduce`: retrain from a run record, compare the metrics."""
from __future__ import annotations

import json
import shutil

from fixtures.trainkit import (
    FIXTURES,
    error_line,
    mixed_frame,
    numeric_config,
    numeric_frame,
    run,
    write_project,
)


def train(tmp_path, capsys, cfg=None, files=None, frames=None):
    path = write_project(tmp_path, cfg or numeric_config(), frames or {"data.csv": numeric_frame()}, files)
    code, out, err = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 0, err
    return path, out


def test_reproduce_matches_without_the_model_artifact(tmp_path, capsys):
    cfg = numeric_config(search={"params": {"C": [0.1, 1.0]}, "cv": 3})
    path, summary = train(tmp_path, capsys, cfg)
    shutil.rmtree(tmp_path / "out" / "model")
    # the config file may change later: the record's config is what counts
    path.write_text(path.read_text().replace("seed: 3", "seed: 99"))
    code, out, err = run(capsys, "reproduce", "--run-record", tmp_path / "out" / "run.json")
    assert code == 0, err
    assert out["match"] is True and out["exact"] is True and out["tolerance"] == 0.0
    assert out["run_id"] == summary["run_id"] and out["reproduced_run_id"] != summary["run_id"]
    assert all(m["match"] and m["diff"] == 0.0 for m in out["metrics"].values())
    assert out["best_params"]["match"] is True and out["best_params"]["recorded"] == summary["best_params"]
    assert out["model_sha256"]["match"] is True
    assert "metrics match (exactly)" in err


def test_reproduce_writes_to_out_when_asked(tmp_path, capsys):
    train(tmp_path, capsys)
    code, out, _ = run(capsys, "reproduce", "--run-record", tmp_path / "out" / "run.json", "--out", tmp_path / "rep")
    assert code == 0 and out["match"]
    assert (tmp_path / "rep" / "model" / "model.json").exists() and (tmp_path / "rep" / "run.json").exists()


def test_reproduce_reports_changed_data(tmp_path, capsys):
    path, _ = train(tmp_path, capsys)
    data = path.parent / "data.csv"
    data.write_text(data.read_text() + "999,0.1,0.2,0.3,low\n")
    code, out, err = run(capsys, "reproduce", "--run-record", tmp_path / "out" / "run.json")
    assert code == 1
    assert out["match"] is False and out["reason"] == "inputs_changed"
    assert out["changed"][0]["path"].endswith("model/data.csv") and out["changed"][0]["kind"] == "data"
    line = error_line(err)
    assert "model/data.csv: data file differs from the run record" in line


def test_reproduce_reports_missing_data(tmp_path, capsys):
    path, _ = train(tmp_path, capsys)
    (path.parent / "data.csv").unlink()
    code, out, err = run(capsys, "reproduce", "--run-record", tmp_path / "out" / "run.json")
    assert code == 1 and out["changed"][0]["actual_sha256"] is None
    assert "data.csv: data file differs from the run record" in error_line(err)


def test_reproduce_reports_metric_mismatch(tmp_path, capsys):
    train(tmp_path, capsys)
    rr = tmp_path / "out" / "run.json"
    rec = json.loads(rr.read_text())
    rec["metrics"]["accuracy"] -= 0.05
    rr.write_text(json.dumps(rec))
    code, out, err = run(capsys, "reproduce", "--run-record", rr)
    assert code == 1 and out["match"] is False
    assert out["metrics"]["accuracy"]["match"] is False and out["metrics"]["accuracy"]["diff"] > 0.04
    assert out["metrics"]["f1_macro"]["match"] is True
    assert "did not reproduce: accuracy differ" in err
    # an explicit tolerance can accept it
    code, out, _ = run(capsys, "reproduce", "--run-record", rr, "--tolerance", "0.1")
    assert code == 0 and out["match"] is True


def test_reproduce_entry_point_uses_tolerance_and_checks_code(tmp_path, capsys):
    cfg = numeric_config(target="target", features={"numeric": ["amount"], "categorical": ["colour"]},
                         entry_point="custom_train:build")
    cfg.pop("estimator")
    src = (FIXTURES / "entry" / "custom_train.py").read_text()
    path, _ = train(tmp_path, capsys, cfg, {"custom_train.py": src}, {"data.csv": mixed_frame()})
    code, out, err = run(capsys, "reproduce", "--run-record", tmp_path / "out" / "run.json")
    assert code == 0, err
    assert out["deterministic"] is False and out["tolerance"] == 0.01 and out["match"] is True
    (path.parent / "custom_train.py").write_text(src.replace("n_estimators=25", "n_estimators=5"))
    code, out, err = run(capsys, "reproduce", "--run-record", tmp_path / "out" / "run.json")
    assert code == 1 and out["changed"][0]["kind"] == "entry_point"
    assert "custom_train.py: entry_point file differs from the run record" in error_line(err)


def test_reproduce_bad_record(tmp_path, capsys):
    code, _, err = run(capsys, "reproduce", "--run-record", tmp_path / "nope.json")
    assert code == 1 and "run record not found" in err
    (tmp_path / "x.json").write_text("{}")
    code, _, err = run(capsys, "reproduce", "--run-record", tmp_path / "x.json")
    assert code == 1 and "not a modelci run record" in err


def test_reproduce_with_base_dir_from_another_checkout(tmp_path, capsys, monkeypatch):
    train(tmp_path / "a", capsys)
    shutil.copytree(tmp_path / "a" / "model", tmp_path / "b" / "model")
    shutil.rmtree(tmp_path / "a" / "model")
    code, _, err = run(capsys, "reproduce", "--run-record", tmp_path / "a" / "out" / "run.json")
    assert code == 1 and "not found here" in err
    code, out, err = run(capsys, "reproduce", "--run-record", tmp_path / "a" / "out" / "run.json",
                         "--base-dir", tmp_path / "b" / "model")
    assert code == 0 and out["match"], err
