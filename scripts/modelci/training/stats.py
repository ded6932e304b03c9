"""What training records besides the model: per-feature and target statistics (for drift checks),
the input/output signature (model.json) and the smoke-test sample (smoke.json)."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ..config import text_features
from ..data import feature_columns
from ..metrics import to_native

SMOKE_ROWS = 20


QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
TOP_CATEGORIES = 100


def _numeric_stats(values: np.ndarray) -> dict[str, Any]:
    v = values[~np.isnan(values)]
    out: dict[str, Any] = {"count": int(v.size), "missing": int(values.size - v.size)}
    if v.size == 0:
        return out
    qs = np.quantile(v, QUANTILES)
    out.update({"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                "min": float(v.min()), "max": float(v.max()),
                "quantiles": {f"p{round(q * 100):02d}": float(x) for q, x in zip(QUANTILES, qs)}})
    edges = np.unique(np.quantile(v, np.linspace(0, 1, 11)))
    if edges.size < 2:
        edges = np.array([v.min(), v.max() if v.max() > v.min() else v.min() + 1.0])
    counts, edges = np.histogram(v, bins=edges)
    out["histogram"] = {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}
    return out


def feature_stats(config: dict[str, Any], X: pd.DataFrame) -> dict[str, Any]:
    """Per-feature statistics of the training rows, enough for drift checks (PSI/KS) later.

    numeric:     count, missing, mean, std, min, max, quantiles p01..p99, histogram (decile edges + counts)
    categorical: count, missing, distinct, frequencies {value: count} (top 100, rest under "__other__")
    text:        count, missing, empty, length (characters) and words (word count) with numeric stats"""
    stats: dict[str, Any] = {}
    for col in config["features"]["numeric"]:
        s = {"kind": "numeric"}
        s.update(_numeric_stats(pd.to_numeric(X[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)))
        stats[col] = s
    for col in config["features"]["categorical"]:
        series = X[col]
        missing = int(series.isna().sum())
        vc = series.dropna().map(lambda v: str(to_native(v))).value_counts()
        freqs = {str(k): int(v) for k, v in vc.iloc[:TOP_CATEGORIES].items()}
        if len(vc) > TOP_CATEGORIES:
            freqs["__other__"] = int(vc.iloc[TOP_CATEGORIES:].sum())
        stats[col] = {"kind": "categorical", "count": int(len(series) - missing), "missing": missing,
                      "distinct": len(vc), "frequencies": freqs}
    for col in [c for _, cols in text_features(config) for c in cols]:
        series = X[col]
        missing = int(series.isna().sum())
        text = series.dropna().astype(str)
        lengths = text.str.len().to_numpy(dtype=float)
        words = text.str.split().str.len().to_numpy(dtype=float)
        stats[col] = {"kind": "text", "count": len(text), "missing": missing,
                      "empty": int((text.str.strip() == "").sum()),
                      "length": _numeric_stats(lengths), "words": _numeric_stats(words)}
    return stats


def target_stats(config: dict[str, Any], y: pd.Series) -> dict[str, Any]:
    if config["task"] == "classification":
        vc = y.value_counts()
        return {"kind": "classes", "count": len(y),
                "frequencies": {str(to_native(k)): int(v) for k, v in vc.items()}}
    return {"kind": "numeric", **_numeric_stats(y.to_numpy(dtype=float))}


# ---------------------------------------------------------------------------------------------- signature
def _datatype(series: pd.Series, kind: str) -> str:
    if kind == "text":
        return "BYTES"
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_integer_dtype(series.dtype):
        return "INT64"
    if pd.api.types.is_float_dtype(series.dtype):
        return "FP64"
    return "FP64" if kind == "numeric" else "BYTES"


def signature(config: dict[str, Any], X: pd.DataFrame, classes: list[Any] | None) -> tuple[list, list]:
    inputs = [{"name": c, "kind": k, "datatype": _datatype(X[c], k)}
              for k in ("numeric", "categorical") for c in config["features"][k]]
    inputs += [{"name": c, "kind": "text", "datatype": _datatype(X[c], "text")}
               for _, cols in text_features(config) for c in cols]
    order = {c: i for i, c in enumerate(feature_columns(config))}
    inputs.sort(key=lambda d: order[d["name"]])
    if config["task"] == "regression":
        out_type = "FP64"
    elif classes and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes):
        out_type = "INT64"
    elif classes and all(isinstance(c, (int, float, np.number)) for c in classes):
        out_type = "FP64"
    else:
        out_type = "BYTES"
    return inputs, [{"name": "predict", "datatype": out_type}]


def records(X: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-native dicts (NaN -> None)."""
    cols = list(X.columns)
    return [{c: to_native(v) for c, v in zip(cols, row)} for row in X.itertuples(index=False, name=None)]


def smoke_sample(model: Any, X_hold: pd.DataFrame, n: int = SMOKE_ROWS) -> tuple[dict[str, Any], list[str]]:
    """~n hold-out rows and the model's predictions on them, computed from the JSON form of the rows
    (exactly what the serving app receives)."""
    warnings = []
    sample = X_hold.iloc[:n]
    inputs = records(sample)
    replay = pd.DataFrame.from_records(json.loads(json.dumps(inputs)), columns=list(X_hold.columns))
    expected = to_native(list(model.predict(replay)))
    direct = to_native(list(model.predict(sample)))
    if expected != direct:
        warnings.append("predictions on the JSON form of the smoke rows differ from predictions on the typed "
                        "training frame; check column types in the serving app")
    return {"inputs": inputs, "expected": expected}, warnings
