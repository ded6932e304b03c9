"""`modelci train`: outputs, feature kinds, search, metrics, run record, reuse."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fixtures.trainkit import (
    FIXTURES,
    copy_fixture,
    mixed_frame,
    numeric_config,
    numeric_frame,
    regression_frame,
    run,
    write_project,
)
from modelci import artifact
from modelci.metrics import compute

ROOT = Path(__file__).resolve().parents[1]


def read(path: Path):
    return json.loads(Path(path).read_text())


# ------------------------------------------------------------------------------------------ example model
@pytest.fixture(scope="module")
def wine_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("wine") / "out"
    res = subprocess.run([sys.executable, "-m", "modelci.cli", "train", "--config", "model/modelci.yml",
                          "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    return out, json.loads(res.stdout), res.stderr


def test_example_model_outputs(wine_out):
    out, summary, err = wine_out
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model", "run.json"]
    assert sorted(p.name for p in (out / "model").iterdir()) == ["model.joblib", "model.json", "smoke.json"]
    assert summary["status"] == "trained" and summary["reused"] is False
    assert 0.8 <= summary["metrics"]["accuracy"] < 1.0  # realistic, not perfect
    assert "section_start:" in err and "section_end:" in err  # collapsible sections on stderr
    _, meta = artifact.load_model(out / "model")
    assert meta["sha256"] == summary["model_sha256"] == artifact.sha256_file(out / "model" / "model.joblib")
    assert meta["name"] == "wine" and meta["version"] is None and meta["task"] == "classification"
    assert meta["classes"] == ["class_0", "class_1", "class_2"]
    assert meta["inputs"][0] == {"name": "alcohol", "kind": "numeric", "datatype": "FP64"}
    assert meta["outputs"] == [{"name": "predict", "datatype": "BYTES"}]
    assert meta["data_sha256"] == artifact.sha256_file(ROOT / "model" / "data" / "wine.csv")
    assert meta["run_id"] == summary["run_id"] and meta["trained_at"].endswith("Z")
    assert set(meta["feature_stats"]) == {i["name"] for i in meta["inputs"]}
    assert meta["metrics"] == read(out / "metrics.json")["metrics"]


def test_example_model_smoke_sample_replays(wine_out):
    out, _, _ = wine_out
    smoke = read(out / "model" / "smoke.json")
    assert len(smoke["inputs"]) == len(smoke["expected"]) == 20
    model, _ = artifact.load_model(out / "model")
    frame = pd.DataFrame.from_records(smoke["inputs"])
    assert list(model.predict(frame)) == smoke["expected"]
    assert all(isinstance(v, str) for v in smoke["expected"])
    # the smoke rows are hold-out rows
    from modelci.config import load_config
    from modelci.data import load_holdout
    X, _ = load_holdout(load_config(ROOT / "model" / "modelci.yml"))
    assert smoke["inputs"] == json.loads(X.iloc[:20].to_json(orient="records"))


def test_example_model_run_record(wine_out):
    out, summary, _ = wine_out
    rec = read(out / "run.json")
    assert rec["run_id"] == summary["run_id"] and rec["schema_version"] == 1
    assert rec["config"]["model"] == {"name": "wine", "major": 1}
    assert "_base_dir" not in rec["config"]
    assert rec["data"]["files"] == [{"path": "data/wine.csv", "rows": 120, "bytes": (ROOT / "model/data/wine.csv").stat().st_size,
                                     "sha256": artifact.sha256_file(ROOT / "model/data/wine.csv")}]
    assert rec["rows"]["train"] + rec["rows"]["holdout"] == 120
    assert rec["libraries"]["scikit-learn"] and rec["libraries"]["modelci"]
    assert rec["seed"] == 42 and rec["seeded_params"] == ["estimator__random_state"]
    assert rec["model"]["sha256"] == summary["model_sha256"] and rec["model"]["deterministic"] is True
    assert set(rec["durations"]) >= {"load", "split", "fit", "evaluate", "save", "total"}
    st = rec["feature_stats"]["alcohol"]
    assert st["kind"] == "numeric" and sum(st["histogram"]["counts"]) == st["count"] == rec["rows"]["train"]
    assert len(st["histogram"]["edges"]) == len(st["histogram"]["counts"]) + 1
    assert set(st["quantiles"]) == {"p01", "p05", "p10", "p25", "p50", "p75", "p90", "p95", "p99"}
    assert rec["target_stats"]["kind"] == "classes"
    assert len(rec["reuse_key"]) == 64
    m = read(out / "metrics.json")
    assert set(m) == {"metrics", "per_class", "confusion_matrix", "n"}
    assert sum(map(sum, m["confusion_matrix"]["matrix"])) == m["n"] == rec["rows"]["holdout"]


def test_env_defaults(tmp_path, monkeypatch, capsys):
    path = write_project(tmp_path, numeric_config(), {"data.csv": numeric_frame()})
    monkeypatch.setenv("MODELCI_CONFIG", str(path))
    monkeypatch.setenv("MODELCI_OUT", str(tmp_path / "envout"))
    code, out, _ = run(capsys, "train")
    assert code == 0 and (tmp_path / "envout" / "run.json").exists()
    assert out["out"] == str(tmp_path / "envout")


def test_commit_from_ci_env(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CI_COMMIT_SHA", "a" * 40)
    monkeypatch.setenv("CI_PIPELINE_ID", "1234")
    path = write_project(tmp_path, numeric_config(), {"data.csv": numeric_frame()})
    _, out, _ = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    meta = read(tmp_path / "out" / "model" / "model.json")
    rec = read(tmp_path / "out" / "run.json")
    assert out["commit"] == meta["commit"] == rec["commit"] == "a" * 40
    assert rec["pipeline_id"] == "1234"


def test_retrain_into_existing_out_replaces_outputs_only(tmp_path, capsys):
    path = write_project(tmp_path, numeric_config(), {"data.csv": numeric_frame()})
    out = tmp_path / "out"
    (out / "gate").mkdir(parents=True)
    (out / "model").mkdir()
    (out / "model" / "stale.txt").write_text("x")
    code, _, _ = run(capsys, "train", "--config", path, "--out", out)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["gate", "metrics.json", "model", "run.json"]
    assert not (out / "model" / "stale.txt").exists()
    mode = (out / "model" / "model.json").stat().st_mode & 0o777
    assert mode & 0o044 == 0o044  # readable by others (serving image's non-root user, CI artifacts)


def test_failure_during_fit_writes_nothing(tmp_path, capsys):
    cfg = numeric_config(estimator={"class": "sklearn.linear_model.LogisticRegression",
                                    "params": {"solver": "liblinear", "penalty": "elasticnet"}})
    path = write_project(tmp_path, cfg, {"data.csv": numeric_frame()})
    code, out, err = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 1 and out is None and "fitting the model failed" in err
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


# ------------------------------------------------------------------------------------------ feature kinds
def test_numeric_only(tmp_path, capsys):
    path = write_project(tmp_path, numeric_config(), {"data.csv": numeric_frame()})
    code, out, _ = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 0 and out["metrics"]["accuracy"] > 0.6
    model, meta = artifact.load_model(tmp_path / "out" / "model")
    assert [i["datatype"] for i in meta["inputs"]] == ["FP64"] * 3
    # the pipeline takes raw inputs, including missing values
    assert len(model.predict(pd.DataFrame({"x1": [np.nan, 1.0], "x2": [0.5, None], "x3": [0, 0]}))) == 2


def test_mixed_numeric_categorical_text(tmp_path, capsys):
    cfg = numeric_config(target="target", features={"numeric": ["amount"], "categorical": ["colour"],
                                                    "text": ["review"]})
    path = write_project(tmp_path, cfg, {"data.csv": mixed_frame()})
    code, out, _ = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 0 and out["metrics"]["accuracy"] > 0.8 and "roc_auc" in out["metrics"]
    model, meta = artifact.load_model(tmp_path / "out" / "model")
    assert [(i["name"], i["kind"], i["datatype"]) for i in meta["inputs"]] == [
        ("amount", "numeric", "FP64"), ("colour", "categorical", "BYTES"), ("review", "text", "BYTES")]
    fs = meta["feature_stats"]
    assert fs["colour"]["kind"] == "categorical" and set(fs["colour"]["frequencies"]) <= {"red", "blue", "green"}
    assert fs["colour"]["missing"] > 0
    assert fs["review"]["kind"] == "text" and fs["review"]["length"]["mean"] > 5
    # raw JSON-like inputs: unknown category, missing text, missing number
    frame = pd.DataFrame.from_records([{"amount": None, "colour": "purple", "review": None},
                                       {"amount": 11.0, "colour": "red", "review": "great excellent love"}])
    pred = model.predict(frame)
    assert pred[1] == "yes"
    smoke = read(tmp_path / "out" / "model" / "smoke.json")
    assert list(model.predict(pd.DataFrame.from_records(smoke["inputs"]))) == smoke["expected"]


def _train_produtos(tmp_path, capsys, strip):
    import yaml
    d = copy_fixture("produtos", tmp_path / f"produtos-{strip}")
    cfg = yaml.safe_load((d / "modelci.yml").read_text())
    cfg["preprocessing"]["text"]["strip_accents"] = strip
    (d / "modelci.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    code, _, err = run(capsys, "train", "--config", d / "modelci.yml", "--out", d / "out")
    assert code == 0, err
    return artifact.load_model(d / "out" / "model")[0]


ACCENTED = ["câmera portátil com áudio", "câmera digital", "cômoda de madeira", "sofá estofado", "áudio potente"]
PLAIN = ["camera portatil com audio", "camera digital", "comoda de madeira", "sofa estofado", "audio potente"]
TRUTH = ["eletrônicos", "eletrônicos", "móveis", "móveis", "eletrônicos"]


def test_strip_accents_changes_predictions_on_portuguese_text(tmp_path, capsys):
    with_strip = _train_produtos(tmp_path, capsys, "unicode")
    without = _train_produtos(tmp_path, capsys, None)

    def predict(model, texts):
        return list(model.predict(pd.DataFrame({"descricao": texts})))

    # with accent stripping, accented and unaccented queries get the same answers, and the right ones
    assert predict(with_strip, PLAIN) == predict(with_strip, ACCENTED) == TRUTH
    # without it, unaccented words are unknown to the model: predictions differ and accuracy drops
    plain_without = predict(without, PLAIN)
    assert plain_without != predict(without, ACCENTED)
    acc = lambda pred: np.mean([p == t for p, t in zip(pred, TRUTH)])
    assert acc(predict(with_strip, PLAIN)) - acc(plain_without) >= 0.4


def test_stop_words_from_file_are_preprocessed_like_documents(tmp_path, capsys):
    model = _train_produtos(tmp_path, capsys, "unicode")
    vocab = model.named_steps["preprocess"].named_transformers_["text0"].named_steps["tfidf"].vocabulary_
    assert "com" not in vocab and "para" not in vocab and "e" not in vocab
    assert "camera" in vocab and "câmera" not in vocab


def test_regression(tmp_path, capsys):
    cfg = numeric_config(task="regression", target="price",
                         features={"numeric": ["a", "b"], "categorical": ["kind"]},
                         estimator={"class": "sklearn.linear_model.Ridge", "params": {"alpha": 0.1}},
                         gate={"primary_metric": "rmse", "thresholds": {"r2": {"min": 0.9}, "rmse": {"max": 2}}})
    path = write_project(tmp_path, cfg, {"data.csv": regression_frame()})
    code, out, _ = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 0
    assert set(out["metrics"]) == {"mae", "rmse", "r2"} and out["metrics"]["r2"] > 0.95
    meta = read(tmp_path / "out" / "model" / "model.json")
    assert meta["task"] == "regression" and meta["classes"] is None
    assert meta["outputs"] == [{"name": "predict", "datatype": "FP64"}]
    m = read(tmp_path / "out" / "metrics.json")
    assert "per_class" not in m and "confusion_matrix" not in m
    assert read(tmp_path / "out" / "run.json")["target_stats"]["kind"] == "numeric"


def test_custom_entry_point(tmp_path, capsys):
    cfg = numeric_config(target="target", features={"numeric": ["amount"], "categorical": ["colour"]},
                         entry_point="custom_train:build")
    cfg.pop("estimator")
    path = write_project(tmp_path, cfg, {"data.csv": mixed_frame()},
                         {"custom_train.py": (FIXTURES / "entry" / "custom_train.py").read_text()})
    code, _, err = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 0, err
    model, _ = artifact.load_model(tmp_path / "out" / "model")
    assert type(model.named_steps["forest"]).__name__ == "RandomForestClassifier"
    assert model.named_steps["forest"].random_state == 3  # seeded from the config
    rec = read(tmp_path / "out" / "run.json")
    assert "forest__random_state" in rec["seeded_params"]
    assert rec["model"]["estimator"] == "custom_train:build" and rec["model"]["deterministic"] is False
    assert rec["training_inputs"] == [{"kind": "entry_point", "path": "custom_train.py",
                                       "sha256": artifact.sha256_file(tmp_path / "model" / "custom_train.py")}]


@pytest.mark.parametrize("source, expected", [
    ("def build():\n    return 42\n", "returned int, not an unfitted scikit-learn estimator"),
    ("import nosuchpackage_xyz\n", "importing 'custom_train' failed"),
    ("def other():\n    pass\n", "module 'custom_train' has no function 'build'"),
    ("def build(config):\n    raise RuntimeError('boom')\n", "custom_train:build() raised RuntimeError: boom"),
])
def test_entry_point_errors(tmp_path, capsys, source, expected):
    cfg = numeric_config(entry_point="custom_train:build")
    cfg.pop("estimator")
    path = write_project(tmp_path, cfg, {"data.csv": numeric_frame()}, {"custom_train.py": source})
    code, _, err = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 1 and expected in err
    assert not (tmp_path / "out").exists()


def test_entry_point_module_missing(tmp_path, capsys):
    cfg = numeric_config(entry_point="nowhere:build")
    cfg.pop("estimator")
    path = write_project(tmp_path, cfg, {"data.csv": numeric_frame()})
    code, _, err = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 1 and "entry_point: module 'nowhere' not found in" in err


# ------------------------------------------------------------------------------------------ search
def test_grid_search_records_and_uses_best_params(tmp_path, capsys):
    cfg = numeric_config(search={"method": "grid", "params": {"C": [0.001, 1.0, 100.0]}, "cv": 3,
                                 "scoring": "f1_macro"})
    path = write_project(tmp_path, cfg, {"data.csv": numeric_frame()})
    code, out, err = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 0, err
    assert isinstance(out, dict)  # stdout is exactly one JSON document, despite the search's progress output
    assert "3 candidate(s) x 3 folds = 9 fits" in err and "[CV]" in err  # progress on stderr
    best = out["best_params"]
    assert set(best) == {"estimator__C"} and best["estimator__C"] in (0.001, 1.0, 100.0)
    model, _ = artifact.load_model(tmp_path / "out" / "model")
    assert model.named_steps["estimator"].C == best["estimator__C"]
    rec = read(tmp_path / "out" / "run.json")
    assert rec["search"]["scoring"] == "f1_macro" and rec["search"]["fits"] == 9
    assert rec["search"]["top"][0]["params"] == best


def test_random_search_with_distributions(tmp_path, capsys):
    cfg = numeric_config(search={"method": "random", "n_iter": 4, "cv": 3,
                                 "params": {"C": {"loguniform": [0.01, 10]},
                                            "preprocess__numeric__impute__strategy": ["mean", "median"]}})
    path = write_project(tmp_path, cfg, {"data.csv": numeric_frame()})
    code, out, err = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 0, err
    assert 0.01 <= out["best_params"]["estimator__C"] <= 10
    assert out["best_params"]["preprocess__numeric__impute__strategy"] in ("mean", "median")
    assert "scoring accuracy" in err  # default scoring


def test_text_search_over_ngram_range(tmp_path, capsys):
    d = copy_fixture("produtos", tmp_path / "p")
    text = (d / "modelci.yml").read_text() + ("search:\n  params:\n    preprocess__text0__tfidf__ngram_range: "
                                              "[[1, 1], [1, 2]]\n  cv: 2\n")
    (d / "modelci.yml").write_text(text)
    code, out, err = run(capsys, "train", "--config", d / "modelci.yml", "--out", d / "out")
    assert code == 0, err
    assert out["best_params"]["preprocess__text0__tfidf__ngram_range"] in ([1, 1], [1, 2])


# ------------------------------------------------------------------------------------------ metrics
def test_metrics_classification_binary_and_multiclass():
    y = np.array(["a", "b", "a", "b", "a", "b"])
    p = np.array(["a", "b", "b", "b", "a", "a"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7], [0.8, 0.2], [0.6, 0.4]])
    r = compute("classification", y, p, proba, ["a", "b"])
    assert r["metrics"]["accuracy"] == pytest.approx(4 / 6) and r["accuracy"] == r["metrics"]["accuracy"]
    assert r["metrics"]["roc_auc"] == pytest.approx(8 / 9)
    assert r["per_class"]["a"] == {"precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3),
                                   "f1": pytest.approx(2 / 3), "support": 3}
    assert r["confusion_matrix"] == {"labels": ["a", "b"], "matrix": [[2, 1], [1, 2]]}
    json.dumps(r)  # JSON-native
    y3 = np.array([0, 1, 2, 0, 1, 2])
    proba3 = np.eye(3)[[0, 1, 2, 0, 2, 1]] * 0.8 + 0.2 / 3
    r3 = compute("classification", y3, proba3.argmax(1), proba3, [0, 1, 2])
    assert set(r3["metrics"]) == {"accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "precision_macro",
                                  "recall_macro", "roc_auc"}
    assert list(r3["per_class"]) == ["0", "1", "2"]
    # no probabilities: no roc_auc; names filter
    assert "roc_auc" not in compute("classification", y, p)["metrics"]
    assert set(compute("classification", y, p, names=["accuracy"])["metrics"]) == {"accuracy"}


def test_metrics_regression():
    r = compute("regression", [1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert r["metrics"] == {"mae": pytest.approx(2 / 3), "rmse": pytest.approx((4 / 3) ** 0.5),
                            "r2": pytest.approx(-1.0)}


# ------------------------------------------------------------------------------------------ reuse
def test_reuse_from_cache_and_bypass(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    path = write_project(tmp_path, numeric_config(), {"data.csv": numeric_frame()})
    code, first, err = run(capsys, "train", "--config", path, "--out", tmp_path / "o1", "--cache-dir", cache)
    assert code == 0 and first["reused"] is False
    assert (cache / first["reuse_key"] / "model" / "model.joblib").exists()

    monkeypatch.setenv("MODELCI_CACHE_DIR", str(cache))
    code, second, err = run(capsys, "train", "--config", path, "--out", tmp_path / "o2")
    assert code == 0 and second["reused"] is True and second["status"] == "reused"
    assert f"reusing model for key {first['reuse_key']}" in err
    assert second["model_sha256"] == first["model_sha256"] and second["run_id"] == first["run_id"]
    artifact.verify_model(tmp_path / "o2" / "model")
    assert (tmp_path / "o2" / "run.json").read_bytes() == (tmp_path / "o1" / "run.json").read_bytes()

    # gate / monitor settings do not change the model: still reused
    import yaml
    cfg = yaml.safe_load(path.read_text())
    cfg["gate"] = {"thresholds": {"accuracy": {"min": 0.5}}}
    path.write_text(yaml.safe_dump(cfg))
    code, third, _ = run(capsys, "train", "--config", path, "--out", tmp_path / "o3")
    assert third["reused"] is True

    monkeypatch.setenv("FORCE_RETRAIN", "true")
    code, forced, err = run(capsys, "train", "--config", path, "--out", tmp_path / "o4")
    assert code == 0 and forced["reused"] is False and forced["run_id"] != first["run_id"]
    assert "not reusing" in err
    monkeypatch.delenv("FORCE_RETRAIN")
    code, forced2, _ = run(capsys, "train", "--config", path, "--out", tmp_path / "o5", "--force")
    assert forced2["reused"] is False

    # a data change gives a new key: trained again
    df = numeric_frame(200)
    df.to_csv(path.parent / "data.csv", index=False)
    code, changed, _ = run(capsys, "train", "--config", path, "--out", tmp_path / "o6")
    assert changed["reused"] is False and changed["reuse_key"] != first["reuse_key"]


def test_reuse_key_changes_with_config_and_code(tmp_path, capsys):
    from modelci.config import load_config
    from modelci.data import fingerprint
    from modelci.runrecord import library_versions, reuse_key
    from modelci.steps.train import training_inputs

    def key(cfg, files=None):
        path = write_project(tmp_path, cfg, {"data.csv": numeric_frame()}, files)
        c = load_config(path)
        return reuse_key(c, fingerprint(c)[0], training_inputs(c), library_versions())

    base = key(numeric_config())
    assert key(numeric_config()) == base
    assert key(numeric_config(seed=4)) != base
    assert key(numeric_config(monitor={"method": "ks"})) == base
    ep = numeric_config(entry_point="custom_train:build")
    ep.pop("estimator")
    k1 = key(ep, {"custom_train.py": "def build():\n    pass\n"})
    k2 = key(ep, {"custom_train.py": "def build():\n    return None\n"})
    assert k1 != k2


def test_corrupt_cache_entry_is_not_reused(tmp_path, capsys):
    cache = tmp_path / "cache"
    path = write_project(tmp_path, numeric_config(), {"data.csv": numeric_frame()})
    _, first, _ = run(capsys, "train", "--config", path, "--out", tmp_path / "o1", "--cache-dir", cache)
    (cache / first["reuse_key"] / "model" / "model.joblib").write_bytes(b"tampered")
    code, second, err = run(capsys, "train", "--config", path, "--out", tmp_path / "o2", "--cache-dir", cache)
    assert code == 0 and second["reused"] is False and "unusable" in err
    artifact.verify_model(cache / first["reuse_key"] / "model")  # cache entry replaced by a good one


def test_model_joblib_needs_no_modelci(tmp_path, capsys):
    """The pickled pipeline only references scikit-learn/numpy (the serving image has no modelci)."""
    cfg = numeric_config(target="target", features={"numeric": ["amount"], "categorical": ["colour"],
                                                    "text": ["review"]})
    path = write_project(tmp_path, cfg, {"data.csv": mixed_frame()})
    run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    code = ("import sys, joblib; sys.modules['modelci'] = None; "
            f"m = joblib.load({str(tmp_path / 'out' / 'model' / 'model.joblib')!r}); print(type(m).__name__)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "Pipeline"


def test_categorical_column_of_numeric_codes(tmp_path, capsys):
    df = regression_frame()
    df["zone"] = np.where(df["kind"] == "x", 11, 22)
    df.loc[df.index % 13 == 0, "zone"] = np.nan  # codes with gaps: read as float
    cfg = numeric_config(task="regression", target="price", features={"numeric": ["a", "b"], "categorical": ["zone"]},
                         estimator={"class": "sklearn.linear_model.Ridge", "params": {}})
    path = write_project(tmp_path, cfg, {"data.csv": df})
    code, out, err = run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    assert code == 0, err
    assert out["metrics"]["r2"] > 0.9
    model, meta = artifact.load_model(tmp_path / "out" / "model")
    assert meta["inputs"][2] == {"name": "zone", "kind": "categorical", "datatype": "FP64"}
    # a JSON number reaches the model as a number and matches the training category
    p = model.predict(pd.DataFrame.from_records([{"a": 0, "b": 5, "zone": 11}, {"a": 0, "b": 5, "zone": 22}]))
    assert p[0] - p[1] > 3


def test_stdout_is_only_json_with_parallel_search(tmp_path):
    """Progress printed by parallel CV workers goes to stderr; stdout stays one JSON document."""
    cfg = numeric_config(search={"params": {"C": [0.1, 1.0]}, "cv": 2, "n_jobs": 2})
    path = write_project(tmp_path, cfg, {"data.csv": numeric_frame()})
    res = subprocess.run([sys.executable, "-m", "modelci.cli", "train", "--config", str(path), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["best_params"]["estimator__C"] in (0.1, 1.0)
    assert "Fitting 2 folds for each of 2 candidates" in res.stderr


# ------------------------------------------------------------------------------------------ combined text
def _combined_project(tmp_path, **features):
    import yaml
    d = copy_fixture("produtos", tmp_path / "combined")
    cfg = yaml.safe_load((d / "modelci.yml").read_text())
    src = pd.read_csv(ROOT / "tests" / "consumer" / "model" / "data" / "produtos.csv")
    src.loc[src.index % 11 == 4, "nome"] = np.nan
    src["preco"] = (src["id"] * 7 % 13).astype(float)
    src.to_csv(d / "data.csv", index=False)
    cfg["data"] = {"files": ["data.csv"]}
    cfg["target"], cfg["id_column"] = "categoria", "id"
    cfg["features"] = features
    (d / "modelci.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return d


def test_combined_text_feature_serves_raw_columns(tmp_path, capsys):
    d = _combined_project(tmp_path, text=[{"name": "texto", "columns": ["nome", "descricao"]}])
    code, out, err = run(capsys, "train", "--config", d / "modelci.yml", "--out", d / "out")
    assert code == 0, err
    model, meta = artifact.load_model(d / "out" / "model")
    # the API takes the raw columns; the combined feature is internal to the pipeline
    assert [(i["name"], i["kind"], i["datatype"]) for i in meta["inputs"]] == [
        ("nome", "text", "BYTES"), ("descricao", "text", "BYTES")]
    assert set(meta["feature_stats"]) == {"nome", "descricao"}
    # one vectorizer over "nome descricao", without a ColumnTransformer in front
    text0 = model.named_steps["preprocess"].named_steps["text0"]
    assert [name for name, _ in text0.steps] == ["fill", "join", "tfidf"]
    frame = pd.DataFrame.from_records([{"nome": "Mouse sem fio, teclado e monitor", "descricao": None},
                                       {"nome": None, "descricao": "Bola de futebol e tênis de corrida"}])
    assert list(model.predict(frame)) == ["informática", "esporte e lazer"]
    # the joined document is what the vectorizer sees: a word only in nome counts like one in descricao
    vec = text0.named_steps["tfidf"]
    both = text0[:-1].transform(pd.DataFrame({"nome": ["bola"], "descricao": [None]}))
    assert list(both) == ["bola "] and "bola" in vec.vocabulary_
    smoke = read(d / "out" / "model" / "smoke.json")
    assert list(model.predict(pd.DataFrame.from_records(smoke["inputs"]))) == smoke["expected"]
    # the pickled model needs neither modelci nor any code outside scikit-learn/pandas/numpy/stdlib
    code = ("import sys, joblib, pandas as pd; sys.modules['modelci'] = None; "
            f"m = joblib.load({str(d / 'out' / 'model' / 'model.joblib')!r}); "
            "print(m.predict(pd.DataFrame({'nome': ['Notebook e mouse'], 'descricao': [None]}))[0])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "informática"


def test_combined_text_feature_with_other_features_and_search(tmp_path, capsys):
    import yaml
    d = _combined_project(tmp_path, numeric=["preco"], text=[{"name": "texto", "columns": ["descricao", "nome"]}])
    cfg = yaml.safe_load((d / "modelci.yml").read_text())
    cfg["search"] = {"params": {"preprocess__text0__tfidf__ngram_range": [[1, 1], [1, 2]]}, "cv": 2}
    (d / "modelci.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    code, out, err = run(capsys, "train", "--config", d / "modelci.yml", "--out", d / "out")
    assert code == 0, err
    assert out["best_params"]["preprocess__text0__tfidf__ngram_range"] in ([1, 1], [1, 2])
    model, meta = artifact.load_model(d / "out" / "model")
    assert [i["name"] for i in meta["inputs"]] == ["preco", "descricao", "nome"]
    ct = model.named_steps["preprocess"]
    assert [name for name, _, _ in ct.transformers] == ["numeric", "text0"]
    assert ct.transformers[1][2] == ["descricao", "nome"]


def test_combined_text_feature_unknown_column(tmp_path, capsys):
    d = _combined_project(tmp_path, text=[{"name": "texto", "columns": ["nome", "descricão"]}])
    code, _, err = run(capsys, "train", "--config", d / "modelci.yml", "--out", d / "out")
    assert code == 1
    assert "modelci.yml: features.text[0].columns[1]: column 'descricão' not in " in err
    assert "(did you mean 'descricao'?)" in err


def test_text_pipelines_have_no_imputer_or_reshape_shim(tmp_path, capsys):
    """Lean pipelines: a text column is selected by name as a 1-D Series and filled by a stateless step."""
    cfg = numeric_config(target="target", features={"numeric": ["amount"], "categorical": ["colour"],
                                                    "text": ["review"]})
    path = write_project(tmp_path, cfg, {"data.csv": mixed_frame()})
    run(capsys, "train", "--config", path, "--out", tmp_path / "out")
    model, _ = artifact.load_model(tmp_path / "out" / "model")
    name, text0, column = model.named_steps["preprocess"].transformers[2]
    assert (name, column) == ("text0", "review")
    assert [type(step).__name__ for _, step in text0.steps] == ["FunctionTransformer", "TfidfVectorizer"]
    assert text0.steps[0][1].func.__class__.__name__ == "methodcaller"
