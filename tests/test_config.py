"""Config file validation: every error names the file, the key path and the fix (one line)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fixtures.trainkit import error_line, numeric_config, numeric_frame, run, write_project
from modelci.config import load_config, public, validate_config
from modelci.errors import ModelCIError

ROOT = Path(__file__).resolve().parents[1]


def bad(tmp_path: Path, cfg: dict) -> str:
    path = write_project(tmp_path, cfg, {"data.csv": numeric_frame()})
    with pytest.raises(ModelCIError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg or "modelci.yml" in msg
    return msg


def test_example_config_resolves_with_defaults():
    cfg = load_config(ROOT / "model" / "modelci.yml")
    assert cfg["model"] == {"name": "wine", "major": 1}
    assert cfg["data"]["files"] == ["data/wine.csv"]
    assert cfg["preprocessing"]["numeric"]["scale"] == "standard"
    assert cfg["preprocessing"]["text"]["strip_accents"] is None  # default filled in
    assert cfg["gate"]["thresholds"]["accuracy"] == {"min": 0.8}
    assert cfg["monitor"] == {"drift_threshold": 0.2, "method": "psi", "on_drift": ["issue"]}
    assert Path(cfg["_base_dir"]) == ROOT / "model"
    assert not any(k.startswith("_") for k in public(cfg))


def test_defaults_for_minimal_config(tmp_path):
    cfg = {"model": {"name": "m"}, "data": {"files": "data.csv"}, "target": "label",
           "features": {"numeric": ["x1"]}}
    out = load_config(write_project(tmp_path, cfg, {"data.csv": numeric_frame()}))
    assert out["task"] == "classification" and out["seed"] == 42 and out["holdout"] == {"fraction": 0.25}
    assert out["data"] == {"files": ["data.csv"], "sep": ",", "encoding": "utf-8"}
    assert out["estimator"]["class"] == "sklearn.linear_model.LogisticRegression"
    assert out["model"]["major"] == 1 and out["search"] is None and out["entry_point"] is None


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c.update(estimatr={}), "estimatr: unknown key; valid keys are model, data"),
    (lambda c: c["estimator"].update(parms={}), "estimator.parms: unknown key; valid keys are class, params (did you mean 'params'?)"),
    (lambda c: c.pop("target"), "target: required key is missing"),
    (lambda c: c.update(task="clasification"), "task: 'clasification' is not valid; use one of classification, regression (did you mean 'classification'?)"),
    (lambda c: c["features"].update(numeric="x1"), "features.numeric: expected a list of strings, got a string 'x1'"),
    (lambda c: c["features"].update(numeric=["x1", 3]), "features.numeric[1]: expected a string, got an integer 3"),
    (lambda c: c.update(seed="abc"), "seed: expected an integer >= 0, got a string 'abc'"),
    (lambda c: c.update(holdout={"fraction": 1.5}), "holdout.fraction: expected a number between 0.0 and 1.0, got 1.5"),
    (lambda c: c["model"].update(major="one"), "model.major: expected an integer >= 0"),
    (lambda c: c["model"].update(name="my model"), "model.name: 'my model' is not a valid model name"),
    (lambda c: c["features"].update(categorical=["x1"]), "features.categorical[0]: column 'x1' is already listed under features.numeric[0]"),
    (lambda c: c["features"].update(numeric=["label"]), "features.numeric[0]: 'label' is the target"),
    (lambda c: c.update(features={}), "features: no feature listed"),
    (lambda c: c["data"].update(files=["/abs/data.csv"]), "data.files[0]: '/abs/data.csv' is absolute"),
    (lambda c: c["data"].update(encoding="klingon"), "data.encoding: unknown encoding 'klingon'"),
    (lambda c: c["estimator"].update({"class": "sklearn.linear_model.NoSuchModel"}), "estimator.class: cannot import 'sklearn.linear_model.NoSuchModel'"),
    (lambda c: c["estimator"].update(params={"max_iterations": 5}), "estimator.params.max_iterations: LogisticRegression has no parameter 'max_iterations' (did you mean 'max_iter'?)"),
    (lambda c: c["estimator"].update({"class": "sklearn.linear_model.Ridge", "params": {}}), "estimator.class: Ridge is a regressor but task is classification"),
    (lambda c: c.update(entry_point="train:build"), "entry_point: both estimator and entry_point are set"),
    (lambda c: (c.pop("estimator"), c.update(entry_point="train.build")), "entry_point: 'train.build' is not 'module:function'"),
    (lambda c: c.update(metrics=["accuracy", "auc"]), "metrics[1]: unknown classification metric 'auc'"),
    (lambda c: c.update(gate={"thresholds": {"accuracy": {"min": "high"}}}), "gate.thresholds.accuracy.min: expected a number, got a string 'high'"),
    (lambda c: c.update(gate={"thresholds": {"accuracy": {"minimum": 0.8}}}), "gate.thresholds.accuracy.minimum: unknown key; valid keys are min, max (did you mean 'min'?)"),
    (lambda c: c.update(gate={"primary_metric": "rmse"}), "gate.primary_metric: unknown classification metric 'rmse'"),
    (lambda c: c.update(gate={"allowed_regression": -1}), "gate.allowed_regression: expected a number >= 0.0, got -1"),
    (lambda c: c.update(gate={"bootstrap": {"samples": "many"}}), "gate.bootstrap.samples: expected an integer >= 1"),
    (lambda c: c.update(gate={"promote_no_change": "yes"}), "gate.promote_no_change: expected true or false"),
    (lambda c: c.update(gate={"per_class_min": {"recall": 0.5, "auc": 0.5}}), "gate.per_class_min.auc: unknown per-class metric 'auc'"),
    (lambda c: c.update(monitor={"method": "chi2"}), "monitor.method: 'chi2' is not valid; use one of psi, ks"),
    (lambda c: c.update(monitor={"drift_threshold": "x"}), "monitor.drift_threshold: expected a number >= 0.0"),
    (lambda c: c.update(search={"params": {"C": {"loguniform": [0.1, 10]}}}), "search.params.C: a distribution needs search.method: random"),
    (lambda c: c.update(search={"method": "random", "params": {"C": {"loguniform": [0, 10]}}}), "search.params.C: loguniform needs [low, high] with low < high and low > 0"),
    (lambda c: c.update(search={"params": {}}), "search.params: empty search space"),
    (lambda c: c.update(search={"params": {"C": [1]}, "scoring": "acuracy"}), "search.scoring: unknown scoring 'acuracy'"),
    (lambda c: c.update(search={"params": {"C": [1]}, "cv": 1}), "search.cv: expected an integer >= 2, got 1"),
    (lambda c: c.update(preprocessing={"numeric": {"scale": "zscore"}}), "preprocessing.numeric.scale: 'zscore' is not valid"),
    (lambda c: c.update(preprocessing={"text": {"strip_accents": "yes"}}), "preprocessing.text.strip_accents: 'yes' is not valid; use one of unicode, ascii"),
    (lambda c: c.update(preprocessing={"text": {"ngram_range": [2, 1]}}), "preprocessing.text.ngram_range: [2, 1] is not [min_n, max_n]"),
    (lambda c: c.update(preprocessing={"text": {"token_pattern": "(["}}), "preprocessing.text.token_pattern: not a valid regular expression"),
    (lambda c: c.update(preprocessing={"text": {"stop_words": "missing.txt"}}), "preprocessing.text.stop_words: file"),
])
def test_config_errors(tmp_path, mutate, expected):
    cfg = numeric_config()
    mutate(cfg)
    msg = bad(tmp_path, cfg)
    assert expected in msg, msg


def test_error_names_the_config_file(tmp_path):
    cfg = numeric_config(seed="x")
    path = write_project(tmp_path, cfg, {"data.csv": numeric_frame()})
    with pytest.raises(ModelCIError, match=r"^.*model/modelci\.yml: seed: expected an integer"):
        load_config(path)


def test_missing_column_through_cli(tmp_path, capsys):
    cfg = numeric_config(features={"numeric": ["x1", "x2", "x33"]})
    path = write_project(tmp_path, cfg, {"data.csv": numeric_frame()})
    code, out, err = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 1 and out is None
    line = error_line(err)
    assert "modelci.yml: features.numeric[2]: column 'x33' not in " in line
    assert "data.csv (did you mean 'x3'?); columns are id, x1, x2, x3, label" in line
    assert not (tmp_path / "out").exists()


def test_yaml_syntax_error_has_line(tmp_path):
    path = tmp_path / "modelci.yml"
    path.write_text("model:\n  name: x\n  major: [1\n")
    with pytest.raises(ModelCIError, match=r"modelci\.yml: line \d+, column \d+: invalid YAML"):
        load_config(path)


def test_empty_and_missing_config(tmp_path):
    (tmp_path / "empty.yml").write_text("")
    with pytest.raises(ModelCIError, match="the config file is empty"):
        load_config(tmp_path / "empty.yml")
    with pytest.raises(ModelCIError, match="config file not found; pass --config PATH or set MODELCI_CONFIG"):
        load_config(tmp_path / "nope.yml")
    (tmp_path / "list.yml").write_text("- a\n- b\n")
    with pytest.raises(ModelCIError, match="expected a mapping of keys"):
        load_config(tmp_path / "list.yml")


def test_paths_are_relative_to_the_config_directory(tmp_path, monkeypatch, capsys):
    cfg = numeric_config(data={"files": ["data/part.csv"]})
    path = write_project(tmp_path / "repo", cfg, {"data/part.csv": numeric_frame()})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, _ = run(capsys, "train", "--config", path, "--out", "o")
    assert code == 0 and out["rows"]["total"] == 160
    assert (elsewhere / "o" / "model" / "model.json").exists()


def test_search_param_names_are_checked_against_the_model(tmp_path, capsys):
    cfg = numeric_config(search={"params": {"C": [1.0], "penaltyy": ["l2"]}, "cv": 3})
    path = write_project(tmp_path, cfg, {"data.csv": numeric_frame()})
    code, _, err = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 1
    assert "search.params.penaltyy: the model has no parameter 'estimator__penaltyy'" in error_line(err)


def test_tab_separator_spelled_as_escape(tmp_path):
    cfg = validate_config(numeric_config(data={"files": ["data.csv"], "sep": "\\t"}), "x.yml", tmp_path)
    assert cfg["data"]["sep"] == "\t"


def test_docs_cover_every_top_level_key():
    from modelci.config import SCHEMA
    doc = (ROOT / "docs" / "config.md").read_text()
    for key in SCHEMA[1]:
        assert f"`{key}`" in doc, key
    for key in yaml.safe_load((ROOT / "model" / "modelci.yml").read_text()):
        assert key in SCHEMA[1]
