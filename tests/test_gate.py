"""The promotion gate: rule, policy, evidence files, the command, and the verdict check deploy uses."""
from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from modelci import artifact, cli, gate
from modelci.errors import ModelCIError
from modelci.steps import gate as gate_cmd


def policy(task="classification", **gate_cfg):
    return gate.normalize_policy(gate_cfg, task)


def noisy(y, accuracy, rng, labels):
    """Predictions equal to y on a fraction `accuracy` of rows, random elsewhere."""
    keep = rng.random(len(y)) < accuracy
    return np.where(keep, y, rng.choice(labels, len(y)))


@pytest.fixture
def rng():
    return np.random.default_rng(7)


# ---- metrics --------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_point_metrics_match_sklearn(rng):
    y = rng.choice(["a", "b", "c"], 2000, p=[0.6, 0.3, 0.1])
    p = noisy(y, 0.7, rng, ["a", "b", "c", "d"])
    got = gate.point_metrics("classification", y, p)["metrics"]
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, p))
    for avg in ("macro", "weighted"):
        assert got[f"f1_{avg}"] == pytest.approx(skm.f1_score(y, p, average=avg, zero_division=0))
        assert got[f"precision_{avg}"] == pytest.approx(skm.precision_score(y, p, average=avg, zero_division=0))
        assert got[f"recall_{avg}"] == pytest.approx(skm.recall_score(y, p, average=avg, zero_division=0))
    yr = rng.normal(size=500)
    pr = yr + rng.normal(scale=0.3, size=500)
    reg = gate.point_metrics("regression", yr, pr)["metrics"]
    assert reg["mae"] == pytest.approx(skm.mean_absolute_error(yr, pr))
    assert reg["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(yr, pr)))
    assert reg["r2"] == pytest.approx(skm.r2_score(yr, pr))


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro"])
def test_bootstrap_is_fast(rng, metric):
    y = rng.integers(0, 4, 3000)
    a, b = noisy(y, 0.8, rng, [0, 1, 2, 3]), noisy(y, 0.78, rng, [0, 1, 2, 3])
    start = time.perf_counter()
    res = gate.paired_bootstrap("classification", metric, y, a, b, samples=1000)
    assert time.perf_counter() - start < 1.0
    assert res["lo"] <= res["improvement"] <= res["hi"]
    assert len(res["diffs"]) == 1000


def test_bootstrap_is_paired_and_seeded(rng):
    y = rng.integers(0, 2, 500)
    a = noisy(y, 0.8, rng, [0, 1])
    r1 = gate.paired_bootstrap("classification", "accuracy", y, a, a, seed=3)
    assert r1["lo"] == r1["hi"] == 0.0  # same predictions: every paired resample gives d = 0 exactly
    b = noisy(y, 0.7, rng, [0, 1])
    assert gate.paired_bootstrap("classification", "accuracy", y, a, b, seed=3)["lo"] == \
        gate.paired_bootstrap("classification", "accuracy", y, a, b, seed=3)["lo"]


def test_roc_auc_matches_sklearn_and_bootstraps(rng):
    y = rng.choice(["a", "b", "c"], 1500)
    onehot = (y[:, None] == np.array(["a", "b", "c"])).astype(float)
    good = np.round(0.6 * onehot + 0.4 * rng.random((1500, 3)), 2)  # rounded: many ties
    good /= good.sum(axis=1, keepdims=True)
    weak = 0.2 * onehot + 0.8 * rng.random((1500, 3))
    weak /= weak.sum(axis=1, keepdims=True)
    classes = ["a", "b", "c"]
    assert gate.roc_auc(y, good, classes) == pytest.approx(
        skm.roc_auc_score(y, good, multi_class="ovr", average="macro", labels=classes))
    yb = (y == "a").astype(int)
    pb = np.c_[1 - good[:, 0], good[:, 0]]
    assert gate.roc_auc(yb, pb, [0, 1]) == pytest.approx(skm.roc_auc_score(yb, pb[:, 1]))
    start = time.perf_counter()
    res = gate.evaluate(policy(primary_metric="roc_auc"), "classification", y, good.argmax(1).astype(str),
                        weak.argmax(1).astype(str), classes=classes, candidate_proba=good, champion_proba=weak)
    assert time.perf_counter() - start < 2.0
    assert res["verdict"] == "PROMOTE" and res["primary"]["lo"] > 0
    with pytest.raises(ModelCIError, match="needs predict_proba"):
        gate.evaluate(policy(primary_metric="roc_auc"), "classification", y, y, y, classes=classes,
                      candidate_proba=good)


# ---- the rule -------------------------------------------------------------------------------------
def test_better_model_is_promoted(rng):
    y = rng.integers(0, 3, 2000)
    res = gate.evaluate(policy(primary_metric="accuracy"), "classification", y,
                        noisy(y, 0.9, rng, [0, 1, 2]), noisy(y, 0.75, rng, [0, 1, 2]))
    assert res["verdict"] == "PROMOTE" and res["passed"] is True
    assert res["primary"]["lo"] > 0
    assert gate.exit_code(res) == 0


def test_worse_model_is_rejected(rng):
    y = rng.integers(0, 3, 2000)
    res = gate.evaluate(policy(primary_metric="f1_macro", allowed_regression=0.01), "classification", y,
                        noisy(y, 0.7, rng, [0, 1, 2]), noisy(y, 0.85, rng, [0, 1, 2]))
    assert res["verdict"] == "REJECT" and res["passed"] is False
    assert res["primary"]["hi"] < -0.01
    assert gate.exit_code(res) == 2
    assert any("worse" in r for r in res["reasons"])


def test_tie_is_no_change(rng):
    y = rng.integers(0, 2, 1000)
    p = noisy(y, 0.8, rng, [0, 1])
    res = gate.evaluate(policy(), "classification", y, p, p.copy())
    assert res["verdict"] == "NO_CHANGE" and res["passed"] is False
    assert gate.exit_code(res) == 3
    res = gate.evaluate(policy(promote_no_change=True), "classification", y, p, p.copy())
    assert res["verdict"] == "NO_CHANGE" and res["passed"] is True and gate.exit_code(res) == 0


def test_higher_but_uncertain_is_no_change(rng):
    y = rng.integers(0, 2, 80)
    champion = noisy(y, 0.8, rng, [0, 1])
    candidate = champion.copy()
    wrong = np.flatnonzero(candidate != y)[:2]
    candidate[wrong] = y[wrong]  # two more rows right: a higher point estimate, not a certain one
    res = gate.evaluate(policy(primary_metric="accuracy"), "classification", y, candidate, champion)
    assert res["primary"]["improvement"] > 0
    assert res["primary"]["lo"] <= 0 < res["primary"]["hi"]
    assert res["verdict"] == "NO_CHANGE"


def test_allowed_regression_turns_small_drop_into_no_change(rng):
    y = rng.integers(0, 2, 3000)
    champion = noisy(y, 0.85, rng, [0, 1])
    candidate = champion.copy()
    right = np.flatnonzero(candidate == y)[:60]  # 2 points worse, confidently
    candidate[right] = 1 - y[right]
    strict = gate.evaluate(policy(primary_metric="accuracy"), "classification", y, candidate, champion)
    assert strict["verdict"] == "REJECT"
    lenient = gate.evaluate(policy(primary_metric="accuracy", allowed_regression=0.05), "classification", y,
                            candidate, champion)
    assert lenient["verdict"] == "NO_CHANGE"


def test_lower_is_better_metric_is_flipped(rng):
    y = rng.normal(size=1500)
    good, bad = y + rng.normal(scale=0.3, size=1500), y + rng.normal(scale=0.6, size=1500)
    res = gate.evaluate(policy("regression", primary_metric="rmse"), "regression", y, good, bad)
    assert res["verdict"] == "PROMOTE"
    assert res["primary"]["higher_is_better"] is False
    assert res["primary"]["diff"] < 0 < res["primary"]["improvement"]
    res = gate.evaluate(policy("regression", primary_metric="mae"), "regression", y, bad, good)
    assert res["verdict"] == "REJECT"


# ---- thresholds, per-class, first model -----------------------------------------------------------
def test_thresholds_apply_to_every_listed_metric(rng):
    y = rng.integers(0, 3, 2000)
    cand, champ = noisy(y, 0.9, rng, [0, 1, 2]), noisy(y, 0.7, rng, [0, 1, 2])
    pol = policy(thresholds={"accuracy": {"min": 0.5}, "f1_macro": {"min": 0.99}})
    res = gate.evaluate(pol, "classification", y, cand, champ)
    assert res["verdict"] == "REJECT"  # better than the champion, but below an absolute threshold
    by_metric = {c["metric"]: c["passed"] for c in res["checks"] if c["kind"] == "threshold"}
    assert by_metric == {"accuracy": True, "f1_macro": False}
    yr = rng.normal(size=300)
    reg = gate.evaluate(policy("regression", thresholds={"rmse": {"max": 0.1}, "r2": {"min": 0.5}}),
                        "regression", yr, yr + rng.normal(scale=0.3, size=300))
    assert reg["verdict"] == "REJECT"
    assert [c["passed"] for c in reg["checks"] if c["kind"] == "threshold"] == [False, True]


def test_first_model_thresholds_only(rng):
    y = rng.integers(0, 2, 500)
    cand = noisy(y, 0.9, rng, [0, 1])
    res = gate.evaluate(policy(thresholds={"accuracy": {"min": 0.8}}), "classification", y, cand, None)
    assert res["verdict"] == "PROMOTE" and res["passed"]
    assert res["primary"]["champion"] is None
    assert any(c.get("skipped") for c in res["checks"])
    res = gate.evaluate(policy(thresholds={"accuracy": {"min": 0.99}}), "classification", y, cand, None)
    assert res["verdict"] == "REJECT"


def test_per_class_minimums(rng):
    y = rng.choice(["cat", "dog", "eel"], 1500)
    pred = y.copy()
    eel = np.flatnonzero(y == "eel")
    pred[eel[: int(len(eel) * 0.7)]] = "cat"  # eel recall ~0.3
    res = gate.evaluate(policy(per_class_min={"recall": 0.5}), "classification", y, pred, None,
                        classes=["cat", "dog", "eel"])
    failed = [c for c in res["checks"] if not c["passed"]]
    assert res["verdict"] == "REJECT"
    assert [c["class"] for c in failed] == ["eel"]
    # a class the model knows but the hold-out set lacks cannot be verified: fail closed
    res = gate.evaluate(policy(per_class_min={"recall": 0.2}), "classification", y, pred, None,
                        classes=["cat", "dog", "eel", "fox"])
    assert [c["class"] for c in res["checks"] if not c["passed"]] == ["fox"]


def test_threshold_on_metric_not_computed_is_an_error(rng):
    y = rng.integers(0, 2, 100)
    with pytest.raises(ModelCIError, match="roc_auc.*not computed"):
        gate.evaluate(policy(thresholds={"roc_auc": {"min": 0.8}}), "classification", y, y, None)
    # supplied by modelci.metrics output, it is used
    res = gate.evaluate(policy(thresholds={"roc_auc": {"min": 0.8}}), "classification", y, y, None,
                        candidate_extra={"roc_auc": 0.9})
    assert res["passed"]


def test_nan_inputs_fail_closed(rng):
    y = rng.normal(size=50)
    pred = y.copy()
    pred[3] = np.nan
    with pytest.raises(ModelCIError, match="NaN"):
        gate.evaluate(policy("regression"), "regression", y, pred, None)
    with pytest.raises(ModelCIError, match="roc_auc is nan"):
        gate.evaluate(policy(thresholds={"roc_auc": {"min": 0.5}}), "classification", [0, 1, 1], [0, 1, 1],
                      None, candidate_extra={"roc_auc": float("nan")})


@pytest.mark.parametrize("cfg, match", [
    ({"treshold": {}}, "unknown key"),
    ({"primary_metric": "rmse"}, "primary_metric"),
    ({"allowed_regression": -0.1}, "allowed_regression"),
    ({"thresholds": {"accuracy": {"minimum": 0.5}}}, "thresholds.accuracy"),
    ({"per_class_min": {"auc": 0.5}}, "per_class_min.auc"),
    ({"bootstrap": {"samples": 5}}, "bootstrap.samples"),
    ({"bootstrap": {"confidence": 1.5}}, "bootstrap.confidence"),
    ({"dry_run": "yes"}, "dry_run"),
])
def test_policy_validation(cfg, match):
    with pytest.raises(ModelCIError, match=match):
        gate.normalize_policy(cfg, "classification", source="model/modelci.yml")


def test_policy_defaults():
    pol = gate.normalize_policy(None, "regression", default_seed=11)
    assert pol["primary_metric"] == "rmse"
    assert pol["bootstrap"] == {"samples": 1000, "confidence": 0.95, "seed": 11}
    assert pol["dry_run"] is False and pol["promote_no_change"] is False
    with pytest.raises(ModelCIError, match="per_class_min"):
        gate.normalize_policy({"per_class_min": {"recall": 0.5}}, "regression")


def test_dry_run_never_passes(rng):
    y = rng.integers(0, 2, 2000)
    res = gate.evaluate(policy(dry_run=True), "classification", y, noisy(y, 0.95, rng, [0, 1]),
                        noisy(y, 0.7, rng, [0, 1]))
    assert res["verdict"] == "PROMOTE"
    assert res["dry_run"] is True and res["passed"] is False and res["would_pass"] is True
    assert gate.exit_code(res) == 0  # reports, does not block
    rejected = gate.evaluate(policy(dry_run=True), "classification", y, noisy(y, 0.6, rng, [0, 1]),
                             noisy(y, 0.9, rng, [0, 1]))
    assert rejected["verdict"] == "REJECT" and gate.exit_code(rejected) == 0


# ---- the command ----------------------------------------------------------------------------------
def make_data(n=900, seed=0):
    r = np.random.default_rng(seed)
    X = pd.DataFrame({"x1": r.normal(size=n), "x2": r.normal(size=n), "color": r.choice(["r", "g"], n)})
    y = pd.Series(np.where(X["x1"] + 0.5 * X["x2"] > 0, "yes", "no"), name="label")
    return X, y


def save(tmp_path, name, estimator, X, y, version=None, inputs=("x1", "x2", "color")):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    num = [c for c in inputs if c != "color"]
    cat = [c for c in inputs if c == "color"]
    pre = ColumnTransformer([("num", "passthrough", num), ("cat", OneHotEncoder(), cat)])
    pipe = make_pipeline(pre, estimator).fit(X[list(inputs)], y)
    meta = {"name": "demo", "version": version, "task": "classification", "target": "label",
            "inputs": [{"name": c, "kind": "categorical" if c == "color" else "numeric",
                        "datatype": "BYTES" if c == "color" else "FP64"} for c in inputs],
            "classes": sorted(set(y)), "metrics": {}}
    d = tmp_path / name
    artifact.save_model(d, pipe, meta)
    (d / "smoke.json").write_text(json.dumps({"inputs": X.head(3).to_dict("records"),
                                              "expected": list(pipe.predict(X.head(3)))}))
    return d


@pytest.fixture
def gate_setup(tmp_path, monkeypatch):
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = make_data()
    config = {"model": {"name": "demo", "major": 1}, "task": "classification", "target": "label", "seed": 3,
              "gate": {"primary_metric": "accuracy", "thresholds": {"accuracy": {"min": 0.7}},
                       "bootstrap": {"samples": 500}}}
    monkeypatch.setattr(gate_cmd, "load_inputs", lambda path: (config, X, y))
    good = save(tmp_path, "candidate", LogisticRegression(), X, y)
    weak = save(tmp_path, "champion", DummyClassifier(strategy="most_frequent"), X, y, version="1.0.0")
    return {"config": config, "good": good, "weak": weak, "tmp": tmp_path, "X": X, "y": y}


def run_gate(s, candidate, champion=None, *extra):
    argv = ["gate", "--config", "cfg.yml", "--candidate", str(candidate), "--out", str(s["tmp"] / "gate"), *extra]
    if champion:
        argv += ["--champion", str(champion)]
    return cli.main(argv)


def test_gate_command_writes_the_evidence(gate_setup, capsys):
    s = gate_setup
    assert run_gate(s, s["good"], s["weak"]) == 0
    out = s["tmp"] / "gate"
    verdict = json.loads((out / "verdict.json").read_text())
    meta = artifact.read_meta(s["good"])
    assert verdict["schema"] == gate.VERDICT_SCHEMA
    assert verdict["sha256"] == meta["sha256"] == artifact.sha256_file(s["good"] / "model.joblib")
    assert verdict["champion_sha256"] == artifact.read_meta(s["weak"])["sha256"]
    assert verdict["verdict"] == "PROMOTE" and verdict["passed"] is True and verdict["dry_run"] is False
    stdout = json.loads(capsys.readouterr().out)
    assert stdout["verdict"] == "PROMOTE" and stdout["exit_code"] == 0

    suite = ET.parse(out / "junit.xml").getroot()
    cases = suite.findall(".//testcase")
    assert len(cases) == len(verdict["checks"]) == 2
    assert not suite.findall(".//failure")

    lines = (out / "metrics.txt").read_text().splitlines()
    assert lines[-1] == "# EOF"
    values = dict(line.split(" ") for line in lines[:-1])
    assert float(values["modelci_candidate_accuracy"]) == pytest.approx(verdict["metrics"]["candidate"]["accuracy"],
                                                                       abs=1e-5)
    assert values["modelci_gate_passed"] == "1"
    assert all(name.replace("_", "a").isalnum() for name in values)

    summary = (out / "summary.md").read_text()
    assert "| metric |" in summary and "PROMOTE" in summary and "interval" in summary
    assert (out / "gate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gate_command_rejects_worse_candidate(gate_setup):
    s = gate_setup
    assert run_gate(s, s["weak"], s["good"]) == 2
    verdict = json.loads((s["tmp"] / "gate" / "verdict.json").read_text())
    assert verdict["verdict"] == "REJECT" and verdict["passed"] is False
    failures = ET.parse(s["tmp"] / "gate" / "junit.xml").getroot().findall(".//failure")
    assert {f.get("type") for f in failures} == {"threshold", "champion"}


def test_gate_command_no_change_and_dry_run(gate_setup):
    s = gate_setup
    assert run_gate(s, s["good"], s["good"]) == 3  # the same model: NO_CHANGE, not promotable
    assert run_gate(s, s["weak"], s["good"], "--dry-run") == 0  # dry run reports, does not block
    verdict = json.loads((s["tmp"] / "gate" / "verdict.json").read_text())
    assert verdict["dry_run"] is True and verdict["passed"] is False and verdict["verdict"] == "REJECT"


def test_gate_first_model_and_empty_champion_dir(gate_setup):
    s = gate_setup
    empty = s["tmp"] / "empty"
    empty.mkdir()
    assert run_gate(s, s["good"], empty) == 0
    verdict = json.loads((s["tmp"] / "gate" / "verdict.json").read_text())
    assert verdict["champion_sha256"] is None and verdict["verdict"] == "PROMOTE"


def test_gate_errors_leave_no_verdict(gate_setup, capsys):
    s = gate_setup
    assert run_gate(s, s["good"]) == 0
    (s["good"] / "model.joblib").write_bytes(b"tampered")
    assert run_gate(s, s["good"]) == 1
    assert "does not match" in capsys.readouterr().err
    assert not (s["tmp"] / "gate" / "verdict.json").exists()


def test_gate_policy_naming_unknown_metric_is_error(gate_setup, capsys):
    s = gate_setup
    s["config"]["gate"]["thresholds"] = {"made_up": {"min": 0.1}}
    assert run_gate(s, s["good"]) == 1
    err = capsys.readouterr().err
    assert "gate.thresholds.made_up" in err and len(err.strip().splitlines()[-1]) < 400


def test_champion_with_old_signature_after_major_bump(gate_setup, tmp_path):
    from sklearn.linear_model import LogisticRegression

    s = gate_setup
    X, y = s["X"], s["y"]
    old = save(tmp_path, "old", LogisticRegression(), X.assign(legacy=1.0), y, version="1.2.0",
               inputs=("x1", "legacy"))
    assert run_gate(s, s["good"], old) == 1  # signature changed without a major bump: error
    s["config"]["model"]["major"] = 2
    assert run_gate(s, s["good"], old) == 0
    verdict = json.loads((s["tmp"] / "gate" / "verdict.json").read_text())
    assert verdict["champion_sha256"] is None and any("major" in r for r in verdict["reasons"])


# ---- the verdict check deploy uses ----------------------------------------------------------------
def test_require_passing_verdict(gate_setup):
    s = gate_setup
    vpath = s["tmp"] / "gate" / "verdict.json"
    assert run_gate(s, s["good"], s["weak"]) == 0
    assert gate.require_passing_verdict(vpath, s["good"])["verdict"] == "PROMOTE"
    with pytest.raises(ModelCIError, match="verdict is for model"):
        gate.require_passing_verdict(vpath, s["weak"])  # a verdict for another sha256

    data = json.loads(vpath.read_text())
    for change, match in [({"dry_run": True, "passed": True}, "dry-run"),
                          ({"passed": False}, "does not allow"),
                          ({"passed": "true"}, "does not allow"),
                          ({"schema": None}, "not a modelci gate verdict")]:
        vpath.write_text(json.dumps({**data, **change}))
        with pytest.raises(ModelCIError, match=match):
            gate.require_passing_verdict(vpath, s["good"])
    vpath.write_text("{not json")
    with pytest.raises(ModelCIError, match="not valid JSON"):
        gate.require_passing_verdict(vpath, s["good"])
    with pytest.raises(ModelCIError, match="not found"):
        gate.require_passing_verdict(s["tmp"] / "missing.json", s["good"])


def test_dry_run_verdict_never_passes_a_deploy(gate_setup):
    s = gate_setup
    assert run_gate(s, s["good"], s["weak"], "--dry-run") == 0
    verdict = json.loads((s["tmp"] / "gate" / "verdict.json").read_text())
    assert verdict["would_pass"] is True and verdict["passed"] is False
    with pytest.raises(ModelCIError, match="dry-run"):
        gate.require_passing_verdict(s["tmp"] / "gate" / "verdict.json", s["good"])


def test_check_verdict_cli(gate_setup, capsys):
    s = gate_setup
    assert run_gate(s, s["good"], s["weak"]) == 0
    vpath = str(s["tmp"] / "gate" / "verdict.json")
    assert cli.main(["gate", "check-verdict", "--verdict", vpath, "--model", str(s["good"])]) == 0
    assert cli.main(["gate", "check-verdict", "--verdict", vpath, "--model", str(s["weak"])]) == 1
    assert "verdict is for model" in capsys.readouterr().err


def test_gate_metrics_agree_with_modelci_metrics(rng):
    """The numbers in the gate table are the numbers training reports (same class convention)."""
    metrics = pytest.importorskip("modelci.metrics")
    y = rng.choice(["a", "b", "c"], 400, p=[0.6, 0.35, 0.05])
    p = noisy(y, 0.6, rng, ["a", "b"])
    classes = ["a", "b", "c", "zzz"]  # "zzz": a class the model knows that appears nowhere here
    ours = gate.point_metrics("classification", y, p, classes)["metrics"]
    theirs = metrics.compute("classification", y, p, classes=classes)["metrics"]
    for name, value in theirs.items():
        if name in ours and value is not None:
            assert ours[name] == pytest.approx(value), name
    yr = rng.normal(size=200)
    pr = yr + rng.normal(size=200)
    ours = gate.point_metrics("regression", yr, pr)["metrics"]
    for name, value in metrics.compute("regression", yr, pr)["metrics"].items():
        assert ours[name] == pytest.approx(value), name
