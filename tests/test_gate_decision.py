"""The gate's decision table on crafted predictions (issue 13): PROMOTE / NO_CHANGE / INCONCLUSIVE /
REJECT x thresholds x expectations x slices x promotable flags, failing closed on bad numbers, and a
lower-is-better metric; plus the config shapes of the new policy keys."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from modelci import gate
from modelci.errors import ModelCIError
from modelci.gate import behaviour
from test_gate import gate_setup, run_gate  # noqa: F401 - fixture re-used


def policy(task="classification", **cfg):
    return gate.normalize_policy(cfg, task)


def pair(n, champ_right, cand_right, seed=0, classes=(0, 1)):
    """y, candidate, champion: the champion is right on the first `champ_right` rows, the candidate
    on the first `cand_right`; wrong rows predict another class."""
    r = np.random.default_rng(seed)
    y = r.choice(classes, n)
    other = np.array([classes[(list(classes).index(v) + 1) % len(classes)] for v in y])
    idx = np.arange(n)
    return y, np.where(idx < cand_right, y, other), np.where(idx < champ_right, y, other)


# ---- the rule itself ------------------------------------------------------------------------------
@pytest.mark.parametrize("lo, hi, d, kw, expected", [
    (0.01, 0.05, 0.03, {}, "PROMOTE"),
    (-0.08, -0.03, -0.05, {}, "REJECT"),                      # hi < -allowed
    (-0.17, 0.0, -0.086, {}, "REJECT"),                       # point estimate < -allowed
    (-0.01, 0.02, 0.005, {}, "NO_CHANGE"),
    (-0.05, 0.06, 0.005, {}, "INCONCLUSIVE"),                 # wider than 4 x 0.02
    (-0.01, 0.02, 0.005, {"n_rows": 20, "min_holdout_rows": 50}, "INCONCLUSIVE"),
    (0.01, 0.2, 0.1, {"n_rows": 20, "min_holdout_rows": 50}, "PROMOTE"),  # confidently better wins
])
def test_decide_order(lo, hi, d, kw, expected):
    assert gate.decide(lo, hi, 0.02, improvement=d, max_interval_width=0.08, **kw) == expected


def test_default_width_limit_is_four_times_allowed_regression():
    assert policy(allowed_regression=0.02)["max_interval_width"] == pytest.approx(0.08)
    assert policy()["max_interval_width"] is None  # allowed_regression 0: no width can resolve it
    assert policy(allowed_regression=0.02, max_interval_width=0.5)["max_interval_width"] == 0.5
    pol = policy()
    assert (pol["promote_inconclusive"], pol["min_holdout_rows"], pol["max_dropped_share"]) == (False, 1, 0.1)


# ---- the two reproductions from the issue ---------------------------------------------------------
def test_clearly_worse_on_a_small_hold_out_is_rejected():
    """35 rows, candidate 8.6 points worse, interval about [-0.172, 0.000]: REJECT, even when
    NO_CHANGE would be promoted."""
    y, cand, champ = pair(35, champ_right=30, cand_right=27)
    pol = policy(primary_metric="accuracy", allowed_regression=0.02, promote_no_change=True)
    res = gate.evaluate(pol, "classification", y, cand, champ)
    p = res["primary"]
    assert p["improvement"] == pytest.approx(-3 / 35)
    assert p["lo"] == pytest.approx(-0.1714, abs=0.03) and p["hi"] == pytest.approx(0.0)
    assert res["verdict"] == "REJECT" and res["passed"] is False and gate.exit_code(res) == 2
    assert any("point estimate" in r for r in res["reasons"])


def test_overflow_outlier_fails_closed():
    """A 1e154 outlier makes about a quarter of the resamples inf - inf: the gate errors (exit 1)
    instead of reporting NO_CHANGE, whatever promote_no_change says."""
    r = np.random.default_rng(1)
    y = r.normal(size=1000)
    y[0] = 1e154
    cand, champ = y + r.normal(scale=0.1, size=1000), y + r.normal(scale=0.1, size=1000)
    cand[0] = champ[0] = 0.0
    pol = policy("regression", primary_metric="rmse", promote_no_change=True)
    with pytest.raises(ModelCIError, match=r"undefined in 2\d\d of 1000 bootstrap resamples") as err:
        gate.evaluate(pol, "regression", y, cand, champ)
    assert err.value.exit_code == 1 and "\n" not in str(err.value)
    # allowing that many dropped resamples still never yields a NaN verdict
    lenient = policy("regression", primary_metric="rmse", max_dropped_share=0.5)
    res = gate.evaluate(lenient, "regression", y, cand, champ)
    assert np.isfinite(res["primary"]["lo"]) and res["primary"]["dropped"] > 200


def test_non_finite_point_metric_fails_closed():
    y = np.array([1e200, 1.0, 2.0, 3.0])
    pred = np.array([-1e200, 1.0, 2.0, 3.0])
    with pytest.raises(ModelCIError, match="not finite|is inf"):
        gate.evaluate(policy("regression", primary_metric="mse"), "regression", y, pred, pred + 1)


def test_dropped_resamples_are_counted_and_limited():
    r = np.random.default_rng(3)
    y = np.array([1] * 3 + [0] * 37)  # a rare class: some resamples have no positive row, AUC undefined
    proba_a = np.c_[1 - r.random(40), r.random(40)]
    proba_b = np.c_[1 - r.random(40), r.random(40)]
    kw = {"classes": [0, 1], "candidate_proba": proba_a / proba_a.sum(1, keepdims=True),
          "champion_proba": proba_b / proba_b.sum(1, keepdims=True)}
    res = gate.evaluate(policy(primary_metric="roc_auc", max_dropped_share=0.2), "classification", y,
                        proba_a.argmax(1), proba_b.argmax(1), **kw)
    assert 0 < res["primary"]["dropped"] < 200
    deltas = {m["metric"]: m for m in res["metric_deltas"]}  # other metrics: from the predictions
    assert "accuracy" in deltas and "roc_auc" not in deltas and deltas["accuracy"]["lo"] is not None
    assert "dropped" in gate.summary_markdown(gate.public_result(res))
    with pytest.raises(ModelCIError, match="max_dropped_share = 0"):
        gate.evaluate(policy(primary_metric="roc_auc", max_dropped_share=0.0), "classification", y,
                      proba_a.argmax(1), proba_b.argmax(1), **kw)


# ---- INCONCLUSIVE and the promotable flags --------------------------------------------------------
def test_inconclusive_says_how_many_rows_would_decide():
    y, cand, champ = pair(40, champ_right=40, cand_right=40)
    champ[:3] = 1 - y[:3]  # the models disagree on 8 rows: candidate right on 5, champion on 3
    cand[3:8] = 1 - y[3:8]
    cand[3:6], champ[3:6] = y[3:6], 1 - y[3:6]
    for flag, passed, code in ((False, False, 3), (True, True, 0)):
        res = gate.evaluate(policy(primary_metric="accuracy", allowed_regression=0.02, promote_inconclusive=flag),
                            "classification", y, cand, champ)
        assert res["verdict"] == "INCONCLUSIVE" and res["passed"] is passed and gate.exit_code(res) == code
    p = res["primary"]
    width = p["hi"] - p["lo"]
    assert width > 0.08 and p["rows_needed"] == int(np.ceil(40 * (width / 0.08) ** 2)) > 40
    summary = gate.summary_markdown(gate.public_result(res))
    assert f"about {p['rows_needed']} hold-out rows" in summary and "INCONCLUSIVE" in summary


def test_too_few_rows_is_inconclusive_and_no_change_flag_does_not_promote_it():
    y, cand, champ = pair(200, champ_right=150, cand_right=150)
    pol = policy(primary_metric="accuracy", min_holdout_rows=500, promote_no_change=True)
    res = gate.evaluate(pol, "classification", y, cand, champ)
    assert res["verdict"] == "INCONCLUSIVE" and res["passed"] is False
    assert res["primary"]["rows_needed"] == 500
    res = gate.evaluate(policy(primary_metric="accuracy", promote_no_change=True), "classification", y, cand, champ)
    assert res["verdict"] == "NO_CHANGE" and res["passed"] is True


def test_promote_beats_width_and_threshold_beats_promote():
    y, cand, champ = pair(60, champ_right=30, cand_right=55)
    res = gate.evaluate(policy(primary_metric="accuracy", allowed_regression=0.01), "classification", y, cand, champ)
    assert res["verdict"] == "PROMOTE"  # wide interval, but confidently better
    res = gate.evaluate(policy(primary_metric="accuracy", thresholds={"accuracy": {"min": 0.95}}),
                        "classification", y, cand, champ)
    assert res["verdict"] == "REJECT"


# ---- lower is better ------------------------------------------------------------------------------
def test_lower_is_better_metric_decisions():
    r = np.random.default_rng(5)
    y = r.normal(size=400)
    base = y + r.normal(scale=0.5, size=400)
    slightly_worse = base + np.where(np.arange(400) < 40, 0.6, 0.0)   # mae up by about 0.05
    pol = policy("regression", primary_metric="mae", allowed_regression=0.02)
    res = gate.evaluate(pol, "regression", y, slightly_worse, base)
    assert res["primary"]["higher_is_better"] is False and res["primary"]["improvement"] < -0.02
    assert res["verdict"] == "REJECT"
    res = gate.evaluate(pol, "regression", y, base, slightly_worse)
    assert res["primary"]["diff"] < 0 < res["primary"]["improvement"]
    assert res["verdict"] in ("PROMOTE", "INCONCLUSIVE", "NO_CHANGE") and res["primary"]["lo"] > -0.02
    res = gate.evaluate(policy("regression", primary_metric="mse", thresholds={"mse": 0.1}), "regression", y, base,
                        base)
    assert [c["bound"] for c in res["checks"] if c["kind"] == "threshold"] == ["max"]  # direction from the registry
    assert res["verdict"] == "REJECT"


# ---- expectations ---------------------------------------------------------------------------------
def predict_by_name(frame):
    return np.where(frame["nome"].str.lower().str.contains("boneca"), "brinquedos", "casa")


EXPECTATIONS = [
    {"name": "boneca is a toy", "input": {"nome": "Boneca bebê"}, "expect": "brinquedos"},
    {"name": "panela", "input": {"nome": "Panela"}, "expect": "casa"},
    {"name": "accents", "invariant": [{"nome": "Boneca"}, {"nome": "boneca"}]},
]


def test_expectations_are_checks_and_any_failure_rejects():
    pol = policy(expectations=EXPECTATIONS)
    checks = behaviour.run_expectations(predict_by_name, pol["expectations"], ["nome", "descricao"])
    assert [c["passed"] for c in checks] == [True, True, True]
    broken = behaviour.run_expectations(lambda f: np.array(["casa"] * len(f)), pol["expectations"], ["nome"])
    assert [c["passed"] for c in broken] == [False, True, True]
    assert "boneca is a toy" in broken[0]["message"] and "'casa'" in broken[0]["message"]
    varying = behaviour.run_expectations(lambda f: np.arange(len(f)), pol["expectations"][2:], ["nome"])
    assert not varying[0]["passed"]

    y, cand, champ = pair(2000, champ_right=1000, cand_right=1900)
    ok = gate.evaluate(pol, "classification", y, cand, champ, expectation_checks=checks)
    assert ok["verdict"] == "PROMOTE"
    res = gate.evaluate(pol, "classification", y, cand, champ, expectation_checks=broken)
    assert res["verdict"] == "REJECT" and gate.exit_code(res) == 2  # better on average, a case broke
    first = gate.evaluate(pol, "classification", y, cand, None, expectation_checks=broken)
    assert first["verdict"] == "REJECT"  # the first model too
    xml = gate.junit_xml({**gate.public_result(res), "model": {"name": "produtos"}})
    failures = ET.fromstring(xml).findall(".//testcase[failure]")
    assert [f.get("name") for f in failures] == ["expectation boneca is a toy"]
    assert "expectation boneca is a toy | **FAIL**" in gate.summary_markdown(gate.public_result(res))


def test_regression_range_expectation_and_unknown_columns():
    pol = policy("regression", expectations=[{"name": "small", "input": {"x": 1}, "range": [0, 2]}])
    assert behaviour.run_expectations(lambda f: f["x"] * 1.5, pol["expectations"], ["x"])[0]["passed"]
    assert not behaviour.run_expectations(lambda f: f["x"] * 3.0, pol["expectations"], ["x"])[0]["passed"]
    with pytest.raises(ModelCIError, match=r"small.*column\(s\) x are not inputs"):
        behaviour.run_expectations(lambda f: f["y"], pol["expectations"], ["y"])


# ---- slices and classes ---------------------------------------------------------------------------
def sliced(n=1200, seed=0):
    """Candidate better on the 'web' segment and on class 0, worse on 'shop' and on class 1."""
    r = np.random.default_rng(seed)
    X = pd.DataFrame({"channel": np.where(np.arange(n) % 3 == 0, "shop", "web"), "price": r.uniform(0, 100, n),
                      "title": ["x" * int(k) for k in r.integers(1, 40, n)]})
    y = r.integers(0, 2, n)
    champ = np.where(r.random(n) < 0.8, y, 1 - y)
    cand = champ.copy()
    web, shop = np.flatnonzero(X["channel"] == "web"), np.flatnonzero(X["channel"] == "shop")
    fix = web[cand[web] != y[web]][: int(0.8 * len(web) * 0.2)]
    cand[fix] = y[fix]
    breaks = shop[cand[shop] == y[shop]][:60]
    cand[breaks] = 1 - y[breaks]
    return X, y, cand, champ


def slice_inputs(X, pol):
    out = []
    for i, spec in enumerate(pol["slices"]):
        labels, order = behaviour.slice_labels(X, spec, index=i)
        out.append({"column": spec["column"], "labels": labels, "order": order})
    return out


def test_slices_show_per_segment_deltas_and_optional_limit_rejects():
    X, y, cand, champ = sliced()
    spec = [{"column": "channel"}, {"column": "price", "bins": [25, 50]}, {"column": "title", "length_bins": [10]}]
    pol = policy(primary_metric="accuracy", slices=spec, bootstrap={"samples": 300})
    res = gate.evaluate(pol, "classification", y, cand, champ, slices=slice_inputs(X, pol))
    assert res["verdict"] == "PROMOTE"  # better on average
    by = {(s["column"], s["slice"]): s for s in res["slices"]}
    assert by[("channel", "shop")]["improvement"] < -0.1 < 0 < by[("channel", "web")]["lo"]
    assert by[("channel", "shop")]["hi"] < 0  # the interval is on the same rows for both models
    assert {k[1] for k in by if k[0] == "price"} == {"< 25", "[25, 50)", ">= 50"}
    assert {k[1] for k in by if k[0] == "title"} == {"< 10 chars", ">= 10 chars"}
    assert sum(s["n_rows"] for s in res["slices"] if s["column"] == "price") == len(y)
    summary = gate.summary_markdown(gate.public_result(res))
    assert "| channel = shop |" in summary and "Per class (recall" in summary

    limited = policy(primary_metric="accuracy", slices=spec[:1], max_slice_regression=0.05, bootstrap={"samples": 300})
    res = gate.evaluate(limited, "classification", y, cand, champ, slices=slice_inputs(X, limited))
    assert res["verdict"] == "REJECT"
    failed = [c["name"] for c in res["checks"] if not c["passed"]]
    assert "slice channel=shop accuracy" in failed and "slice channel=web accuracy" not in failed


def test_per_class_regression_beyond_the_limit_rejects():
    r = np.random.default_rng(2)
    y = r.integers(0, 3, 1500)
    champ = np.where(r.random(1500) < 0.8, y, (y + 1) % 3)
    cand = np.where(y == 2, (y + 1) % 3, y)  # classes 0 and 1 always right, class 2 right on 55% (errors go to 0)
    cand[(y == 2) & (r.random(1500) < 0.55)] = 2
    pol = policy(primary_metric="f1_macro", max_slice_regression=0.05)
    res = gate.evaluate(pol, "classification", y, cand, champ)
    deltas = {c["class"]: c for c in res["per_class_deltas"]["classes"]}
    assert res["per_class_deltas"]["metric"] == "f1"
    assert deltas["2"]["delta"] < -0.05 and deltas["1"]["lo"] > 0
    assert res["primary"]["comparison"] == "PROMOTE" and res["verdict"] == "REJECT"  # better on average
    assert [c["name"] for c in res["checks"] if not c["passed"]] == ["class 2 f1"]
    res = gate.evaluate(policy(primary_metric="f1_macro"), "classification", y, cand, champ)
    assert all(c["kind"] != "class" for c in res["checks"])  # without the limit: reported, not gated


def test_plot_shows_deltas(tmp_path):
    X, y, cand, champ = sliced(600)
    pol = policy(primary_metric="accuracy", slices=[{"column": "channel"}], bootstrap={"samples": 200})
    res = gate.evaluate(pol, "classification", y, cand, champ, slices=slice_inputs(X, pol))
    from modelci.gate.evidence import _forest_rows

    rows = {r[0]: r for r in _forest_rows(res)}
    assert list(rows)[0] == "accuracy (primary)" and "class 1 (recall)" in rows and "channel=shop (n=200)" in rows
    label, d, lo, hi = rows["f1_macro"]  # every metric's delta has its interval from the same resamples
    assert lo is not None and lo <= d <= hi
    assert all(r[2] is not None for r in rows.values())
    assert gate.plot_png(res, tmp_path / "g.png", "classification")
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


# ---- policy and config shapes ---------------------------------------------------------------------
@pytest.mark.parametrize("cfg, match", [
    ({"max_interval_width": 0}, "max_interval_width: must be > 0"),
    ({"min_holdout_rows": 0}, "min_holdout_rows"),
    ({"promote_inconclusive": "yes"}, "promote_inconclusive"),
    ({"max_dropped_share": 1.5}, "max_dropped_share"),
    ({"max_slice_regression": -1}, "max_slice_regression"),
    ({"slices": [{"column": "a", "bins": [2, 1]}]}, r"slices\[0\].bins"),
    ({"slices": [{"column": "a", "length_bins": [1.5]}]}, r"slices\[0\].length_bins"),
    ({"slices": [{"colum": "a"}]}, r"slices\[0\]"),
    ({"expectations": [{"name": "a", "input": {"x": 1}, "expect": 1}, {"name": "a", "input": {"x": 1}, "expect": 2}]},
     "used twice"),
    ({"expectations": [{"name": "a", "input": {"x": 1}}]}, "exactly one of expect"),
    ({"expectations": [{"name": "a", "input": {"x": 1}, "range": [0, 1]}]}, "range: only applies to regression"),
    ({"expectations": [{"name": "a", "invariant": [{"x": 1}]}]}, "at least two"),
    ({"expectations": [{"name": "a", "expect": "toy"}]}, "input: missing"),
])
def test_new_policy_keys_are_validated(cfg, match):
    with pytest.raises(ModelCIError, match=match):
        gate.normalize_policy(cfg, "classification", source="model/modelci.yml")


def test_config_file_validates_the_new_gate_keys(tmp_path):
    from modelci.config import load_config

    (tmp_path / "d.csv").write_text("id,nome,cat\n1,a,x\n2,b,y\n")
    base = {"model": {"name": "m"}, "data": {"files": ["d.csv"]}, "target": "cat", "features": {"text": ["nome"]}}
    ok = {**base, "gate": {"allowed_regression": 0.05, "max_interval_width": 0.3, "min_holdout_rows": 30,
                           "promote_inconclusive": False, "max_dropped_share": 0.05, "max_slice_regression": 0.1,
                           "slices": [{"column": "nome", "length_bins": [5, 20]}],
                           "expectations": [{"name": "a", "input": {"nome": "a"}, "expect": "x"},
                                            {"name": "same", "invariant": [{"nome": "a"}, {"nome": "A"}]}]}}
    path = tmp_path / "modelci.yml"
    path.write_text(json.dumps(ok))
    assert load_config(path)["gate"]["min_holdout_rows"] == 30
    for bad, match in [({"min_holdout_rows": 0}, "gate.min_holdout_rows"),
                       ({"slices": [{"column": "nome", "bins": [3, 1]}]}, r"gate.slices\[0\].bins"),
                       ({"expectations": [{"name": "a", "input": {"nome": "a"}, "expect": "x", "rnage": 1}]},
                        r"gate.expectations\[0\].rnage")]:
        path.write_text(json.dumps({**base, "gate": bad}))
        with pytest.raises(ModelCIError, match=match) as err:
            load_config(path)
        assert str(err.value).startswith(str(path.name)) or "modelci.yml" in str(err.value)


# ---- through the command: the failing case is named in the JUnit report and the summary ------------
def test_gate_command_rejects_a_broken_expectation(gate_setup):  # noqa: F811
    s = gate_setup
    row = s["X"].iloc[0].to_dict()
    truth = s["y"].iloc[0]
    wrong = "no" if truth == "yes" else "yes"
    s["config"]["gate"]["expectations"] = [
        {"name": "first row", "input": row, "expect": truth},
        {"name": "must flip", "input": row, "expect": wrong},
        {"name": "color does not matter", "invariant": [{**row, "color": "r"}, {**row, "color": "r"}]},
    ]
    s["config"]["gate"]["slices"] = [{"column": "color"}, {"column": "x1", "bins": [0]}]
    assert run_gate(s, s["good"], s["weak"]) == 2
    out = s["tmp"] / "gate"
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["verdict"] == "REJECT" and len(verdict["slices"]) == 4
    failures = ET.parse(out / "junit.xml").getroot().findall(".//testcase[failure]")
    assert [f.get("name") for f in failures] == ["expectation must flip"]
    summary = (out / "summary.md").read_text()
    assert "expectation must flip | **FAIL**" in summary and "| color = g |" in summary
