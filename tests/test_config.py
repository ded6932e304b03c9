"""Config file validation: every error names the file, the key path and the fix (one line)."""
from __future__ import annotations

import json
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


# ------------------------------------------------------------------------------------------ JSON Schema
@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c.update(seed=42.0), "seed: expected an integer >= 0, got a number 42.0"),
    (lambda c: c.update(seed=True), "seed: expected an integer >= 0, got a boolean True"),
    (lambda c: c["features"].update(text=[{"name": "doc", "columns": ["x1"]}]), "features.text[0].columns: expected at least 2 item(s), got 1"),
    (lambda c: c["features"].update(text=[{"name": "doc", "cols": ["x1", "x2"]}]), "features.text[0].cols: unknown key; valid keys are name, columns (did you mean 'columns'?)"),
    (lambda c: c["features"].update(text=[{"name": "my doc", "columns": ["a", "b"]}]), "features.text[0].name: 'my doc' is not a valid feature name"),
    (lambda c: c["features"].update(text=[{"name": "x1", "columns": ["a", "b"]}]), "features.text[0].name: 'x1' is already used by features.numeric[0]; give each feature a unique name"),
    (lambda c: c["features"].update(text=[{"name": "d", "columns": ["a", "b"]}, {"name": "d", "columns": ["c", "e"]}]), "features.text[1].name: 'd' is already used by features.text[0].name"),
    (lambda c: c["features"].update(text=[{"name": "d", "columns": ["a", "x2"]}]), "features.text[0].columns[1]: column 'x2' is already listed under features.numeric[1]"),
    (lambda c: c["features"].update(text=[3]), "features.text[0]: expected a string or a mapping, got an integer 3"),
    (lambda c: c.update(gate={"promote_inconclusive": "no"}), "gate.promote_inconclusive: expected true or false"),
    (lambda c: c.update(gate={"max_interval_width": 0}), "gate.max_interval_width: expected a number > 0.0, got 0"),
    (lambda c: c.update(gate={"min_holdout_rows": 0}), "gate.min_holdout_rows: expected an integer >= 1, got 0"),
    (lambda c: c.update(gate={"max_dropped_share": 1.5}), "gate.max_dropped_share: expected a number between 0.0 and 1.0, got 1.5"),
    (lambda c: c.update(gate={"max_slice_regression": -0.1}), "gate.max_slice_regression: expected a number >= 0.0, got -0.1"),
    (lambda c: c.update(gate={"promte_no_change": True}), "gate.promte_no_change: unknown key; valid keys are primary_metric, thresholds, allowed_regression, per_class_min, max_interval_width, min_holdout_rows, promote_no_change, promote_inconclusive, max_dropped_share, max_slice_regression, dry_run, bootstrap, slices, expectations (did you mean 'promote_no_change'?)"),
    (lambda c: c.update(gate={"slices": [{"col": "x1"}]}), "gate.slices[0].col: unknown key; valid keys are column, bins, length_bins (did you mean 'column'?)"),
    (lambda c: c.update(gate={"slices": [{"column": "x1", "bins": [0, "a"]}]}), "gate.slices[0].bins[1]: expected a number, got a string 'a'"),
    (lambda c: c.update(gate={"slices": [{"column": "x1", "bins": [1, 0]}]}), "gate.slices[0].bins: [1.0, 0.0] is not in ascending order"),
    (lambda c: c.update(gate={"slices": [{"column": "x1", "length_bins": [10, 5.5]}]}), "gate.slices[0].length_bins[1]: expected an integer >= 0, got a number 5.5"),
    (lambda c: c.update(gate={"slices": [{"column": "x1", "bins": [1], "length_bins": [2]}]}), "gate.slices[0]: both bins and length_bins are set"),
    (lambda c: c.update(gate={"expectations": [{"name": "a", "input": {"x1": 1}}]}), "gate.expectations[0]: give exactly one of: input + expect, input + range, or invariant"),
    (lambda c: c.update(gate={"expectations": [{"name": "a", "input": {"x1": 1}, "expect": "low", "range": [0, 1]}]}), "gate.expectations[0]: give exactly one of"),
    (lambda c: c.update(gate={"expectations": [{"input": {"x1": 1}, "expect": "low"}]}), "gate.expectations[0].name: required key is missing; add it (a string)"),
    (lambda c: c.update(gate={"expectations": [{"name": "a", "invariant": [{"x1": 1}]}]}), "gate.expectations[0].invariant: expected at least 2 item(s), got 1"),
    (lambda c: c.update(gate={"expectations": [{"name": "a", "input": {"x1": 1}, "range": [2, 1]}]}), "gate.expectations[0].range: [2.0, 1.0] is not [low, high]"),
    (lambda c: c.update(gate={"expectations": [{"name": "a", "input": {"x1": 1}, "expect": "low"}, {"name": "a", "invariant": [{"x1": 1}, {"x1": 2}]}]}), "gate.expectations[1].name: 'a' is already the name of gate.expectations[0]"),
    (lambda c: c.update(gate={"expectations": [{"name": "a", "input": {"x11": 1}, "expect": "low"}]}), "gate.expectations[0].input.x11: 'x11' is not an input column of the model (did you mean 'x1'?)"),
    (lambda c: c.update(gate={"expectations": [{"name": "a", "input": {"x1": [1]}, "expect": "low"}]}), "gate.expectations[0].input.x1: expected a string or a number or a boolean or null, got a list [1]"),
])
def test_schema_errors(tmp_path, mutate, expected):
    cfg = numeric_config()
    mutate(cfg)
    msg = bad(tmp_path, cfg)
    assert expected in msg, msg


def test_gate_keys_of_the_gate_policy_are_accepted(tmp_path):
    gate = {"primary_metric": "f1_macro", "thresholds": {"accuracy": {"min": 0.5}}, "per_class_min": {"recall": 0.2},
            "allowed_regression": 0.01, "max_interval_width": 0.2, "min_holdout_rows": 30, "promote_no_change": True,
            "promote_inconclusive": False, "max_dropped_share": 0.1, "max_slice_regression": 0.05, "dry_run": False,
            "bootstrap": {"samples": 200, "confidence": 0.9},
            "slices": [{"column": "x1", "bins": [-1, 0, 1]}, {"column": "x2"}, {"column": "x3", "length_bins": [5, 20]}],
            "expectations": [{"name": "high x1", "input": {"x1": 3, "x2": 0, "x3": 0}, "expect": "high"},
                             {"name": "x3 does not matter", "invariant": [{"x1": 1, "x3": 0}, {"x1": 1, "x3": 5}]}]}
    out = load_config(write_project(tmp_path, numeric_config(gate=gate), {"data.csv": numeric_frame()}))
    assert out["gate"]["slices"][0]["bins"] == [-1.0, 0.0, 1.0]
    assert out["gate"]["expectations"][1]["invariant"][1] == {"x1": 1, "x3": 5}
    assert out["gate"]["max_interval_width"] == 0.2 and out["gate"]["promote_inconclusive"] is False


def test_combined_text_feature_resolves_and_lists_raw_columns(tmp_path):
    from modelci.config import input_columns, text_features
    cfg = numeric_config(features={"numeric": ["x1"], "text": ["t0", {"name": "doc", "columns": ["t1", "t2"]}]})
    out = validate_config(cfg, "x.yml", tmp_path)
    assert out["features"]["text"] == ["t0", {"name": "doc", "columns": ["t1", "t2"]}]
    assert input_columns(out) == ["x1", "t0", "t1", "t2"]
    assert text_features(out) == [("t0", ["t0"]), ("doc", ["t1", "t2"])]


def test_schema_is_valid_draft_2020_12_and_editors_find_it():
    import jsonschema
    schema = json.loads((ROOT / "scripts" / "modelci" / "schemas" / "modelci.schema.json").read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    for cfg in (ROOT / "model" / "modelci.yml", ROOT / "tests" / "consumer" / "model" / "modelci.yml"):
        first = cfg.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema=")
        target = (cfg.parent / first.split("$schema=", 1)[1].strip()).resolve()
        assert target == (ROOT / "scripts" / "modelci" / "schemas" / "modelci.schema.json").resolve()
        # what an editor checks: the file as written validates against the schema
        jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(cfg.read_text()))


def test_config_reference_is_generated_from_the_schema():
    import subprocess
    import sys
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_config_docs.py"), "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
