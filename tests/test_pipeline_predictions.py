"""Built-in pipelines keep their predictions when their implementation changes (issue: lean pipelines).

tests/fixtures/predictions/*.json were recorded by the pipelines as they were BEFORE the lean rewrite
(`python tests/test_pipeline_predictions.py --record` with that code); the pipelines built today from
the same configs and data must give identical labels and predict_proba values within 1e-12, on the
hold-out rows (typed, and replayed from their JSON form as the serving app receives them) and on edge
rows (missing values everywhere, unseen categories, empty text).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures.trainkit import mixed_frame, numeric_config, regression_frame, write_project  # noqa: E402
from modelci.config import load_config  # noqa: E402
from modelci.data import load_dataset, load_holdout  # noqa: E402
from modelci.metrics import to_native  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ROOT / "tests" / "fixtures" / "predictions"


def _categorical_project(root: Path) -> Path:
    cfg = numeric_config(target="target", features={"numeric": ["amount"], "categorical": ["colour"],
                                                    "text": ["review"]})
    return write_project(root, cfg, {"data.csv": mixed_frame()})


def _options_project(root: Path) -> Path:
    cfg = numeric_config(target="target", features={"numeric": ["amount"], "categorical": ["colour"],
                                                    "text": ["review"]},
                         preprocessing={"numeric": {"impute": "constant", "fill_value": -1.0, "scale": "robust",
                                                    "add_indicator": True},
                                        "categorical": {"impute": "most_frequent", "min_frequency": 3},
                                        "text": {"ngram_range": [1, 2], "binary": True}})
    return write_project(root, cfg, {"data.csv": mixed_frame()})


def _codes_project(root: Path) -> Path:
    df = regression_frame()
    df["zone"] = np.where(df["kind"] == "x", 11, 22)
    df.loc[df.index % 13 == 0, "zone"] = np.nan
    cfg = numeric_config(task="regression", target="price",
                         features={"numeric": ["a", "b"], "categorical": ["kind", "zone"]},
                         estimator={"class": "sklearn.linear_model.Ridge", "params": {"alpha": 0.1}})
    return write_project(root, cfg, {"data.csv": df})


def _copy(src: Path) -> Any:
    def make(root: Path) -> Path:
        shutil.copytree(src, root / "model")
        return root / "model" / "modelci.yml"
    return make


CASES = {
    "wine": _copy(ROOT / "model"),
    "consumer": _copy(ROOT / "tests" / "consumer" / "model"),
    "categorical": _categorical_project,
    "options": _options_project,
    "codes": _codes_project,
}


def _edge_rows(X: pd.DataFrame) -> pd.DataFrame:
    rows: list[dict[str, Any]] = [{c: None for c in X.columns}]
    odd: dict[str, Any] = {}
    for c in X.columns:
        if pd.api.types.is_numeric_dtype(X[c].dtype):
            odd[c] = 12345.5
        else:
            odd[c] = "never-seen-before value ção"
    rows.append(odd)
    rows.append({c: ("" if not pd.api.types.is_numeric_dtype(X[c].dtype) else 0) for c in X.columns})
    return pd.DataFrame.from_records(rows, columns=list(X.columns))


def _frames(config: dict[str, Any]) -> dict[str, pd.DataFrame]:
    X, _ = load_holdout(config)
    replay = pd.DataFrame.from_records(json.loads(X.to_json(orient="records")), columns=list(X.columns))
    return {"typed": X, "json": replay, "edge": _edge_rows(X)}


def _predictions(name: str, root: Path) -> dict[str, Any]:
    from modelci import training

    config = load_config(CASES[name](root))
    result = training.train(config, load_dataset(config))
    out: dict[str, Any] = {}
    for kind, frame in _frames(config).items():
        entry: dict[str, Any] = {"predict": to_native(list(result.model.predict(frame)))}
        if config["task"] == "classification":
            entry["predict_proba"] = np.asarray(result.model.predict_proba(frame)).tolist()
        out[kind] = entry
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_predictions_identical_to_recorded(tmp_path, name):
    expected = json.loads((EXPECTED / f"{name}.json").read_text(encoding="utf-8"))
    got = _predictions(name, tmp_path)
    assert set(got) == set(expected)
    for kind in expected:
        if all(isinstance(v, float) for v in expected[kind]["predict"]):  # regression: values
            np.testing.assert_allclose(got[kind]["predict"], expected[kind]["predict"], rtol=1e-12, atol=1e-12)
        else:  # labels: exact
            assert got[kind]["predict"] == expected[kind]["predict"], (name, kind)
        if "predict_proba" in expected[kind]:
            np.testing.assert_allclose(np.asarray(got[kind]["predict_proba"]),
                                       np.asarray(expected[kind]["predict_proba"]), rtol=0, atol=1e-12)


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    import tempfile

    EXPECTED.mkdir(parents=True, exist_ok=True)
    for case in sorted(CASES):
        with tempfile.TemporaryDirectory() as tmp:
            data = _predictions(case, Path(tmp))
        (EXPECTED / f"{case}.json").write_text(json.dumps(data, ensure_ascii=False, allow_nan=False) + "\n",
                                               encoding="utf-8")
        print(case, {k: len(v["predict"]) for k, v in data.items()})
