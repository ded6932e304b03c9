"""Evaluation metrics for classification and regression, as JSON-native values.

`compute(task, y_true, y_pred, y_proba=None, classes=None)` returns the document written to
out/metrics.json:

    {"metrics": {name: float, ...},            # scalar metrics (the gate's thresholds use these)
     "per_class": {label: {"precision", "recall", "f1", "support"}},   # classification only
     "confusion_matrix": {"labels": [...], "matrix": [[...], ...]},    # classification only
     "n": int}

For convenience the scalar metrics are ALSO top-level keys (`result["accuracy"]` ==
`result["metrics"]["accuracy"]`), so callers that want a flat {name: value} mapping can use
`scalar(result)` or `result["metrics"]`.

Metric names (`CLASSIFICATION_METRICS`, `REGRESSION_METRICS`) are the names the config's
`metrics:`, `search.scoring` (when it is one of these) and `gate.thresholds` use. For all of them
higher is better except mae and rmse (see `HIGHER_IS_BETTER`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted",
                          "precision_macro", "recall_macro", "roc_auc")
REGRESSION_METRICS = ("mae", "rmse", "r2")
PER_CLASS_METRICS = ("precision", "recall", "f1")
HIGHER_IS_BETTER = {**{m: True for m in CLASSIFICATION_METRICS}, "mae": False, "rmse": False, "r2": True}

# config metric name -> scikit-learn scorer name (for cross-validated search)
SKLEARN_SCORERS = {
    "accuracy": "accuracy", "balanced_accuracy": "balanced_accuracy", "f1_macro": "f1_macro",
    "f1_weighted": "f1_weighted", "precision_macro": "precision_macro", "recall_macro": "recall_macro",
    "roc_auc": "roc_auc_ovr", "mae": "neg_mean_absolute_error", "rmse": "neg_root_mean_squared_error",
    "r2": "r2",
}


def known_metrics(task: str) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def to_native(value: Any) -> Any:
    """numpy scalars/arrays -> JSON-native Python values (NaN -> None)."""
    if isinstance(value, dict):
        return {str(to_native(k)) if not isinstance(k, str) else k: to_native(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_native(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_native(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _f(x: Any) -> float:
    return float(x)


def compute(task: str, y_true: ArrayLike, y_pred: ArrayLike, y_proba: Any = None,
            classes: Sequence[Any] | None = None, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Score predictions. `classes` is the column order of `y_proba` (estimator.classes_).

    `names` limits the scalar metrics to those listed (default: every metric for the task)."""
    from sklearn import metrics as skm

    true = np.asarray(y_true)
    pred = np.asarray(y_pred)
    out: dict[str, Any] = {"n": len(true)}
    scalars: dict[str, float] = {}
    if task == "regression":
        yt = true.astype(float)
        yp = pred.astype(float)
        scalars["mae"] = _f(skm.mean_absolute_error(yt, yp))
        scalars["rmse"] = _f(math.sqrt(skm.mean_squared_error(yt, yp)))
        scalars["r2"] = _f(skm.r2_score(yt, yp)) if len(yt) > 1 else float("nan")
    else:
        labels = list(classes) if classes is not None else sorted(set(true.tolist()) | set(pred.tolist()))
        scalars["accuracy"] = _f(skm.accuracy_score(true, pred))
        scalars["balanced_accuracy"] = _f(_balanced_accuracy(true, pred))
        for avg in ("macro", "weighted"):
            scalars[f"f1_{avg}"] = _f(skm.f1_score(true, pred, labels=labels, average=avg, zero_division=0))
        scalars["precision_macro"] = _f(skm.precision_score(true, pred, labels=labels, average="macro",
                                                         zero_division=0))
        scalars["recall_macro"] = _f(skm.recall_score(true, pred, labels=labels, average="macro",
                                                   zero_division=0))
        auc = _roc_auc(true, y_proba, classes)
        if auc is not None:
            scalars["roc_auc"] = auc
        p, r, f, s = skm.precision_recall_fscore_support(true, pred, labels=labels, zero_division=0)
        out["per_class"] = {str(to_native(lab)): {"precision": _f(p[i]), "recall": _f(r[i]), "f1": _f(f[i]),
                                                  "support": int(s[i])} for i, lab in enumerate(labels)}
        cm = skm.confusion_matrix(true, pred, labels=labels)
        out["confusion_matrix"] = {"labels": to_native(list(labels)), "matrix": cm.tolist()}
    if names is not None:
        scalars = {k: v for k, v in scalars.items() if k in names}
    native: dict[str, float | None] = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                                       for k, v in scalars.items()}
    out["metrics"] = native
    for k, v in native.items():  # flat access, see module docstring
        out.setdefault(k, v)
    return out


def scalar(result: dict[str, Any]) -> dict[str, float]:
    """The {name: value} scalar metrics of a compute() result (or of a metrics.json document)."""
    return dict(result.get("metrics", {}))


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    # recall averaged over the classes present in y_true (sklearn's definition, without its warning
    # for classes only present in y_pred)
    recalls = [float(np.mean(y_pred[y_true == c] == c)) for c in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else float("nan")


def _roc_auc(y_true: np.ndarray, y_proba: Any, classes: Sequence[Any] | None) -> float | None:
    """Binary: AUC of the positive (second) class. Multiclass: one-vs-rest, macro averaged.
    None when not computable (no probabilities, or a class missing from y_true)."""
    if y_proba is None or classes is None:
        return None
    from sklearn.metrics import roc_auc_score

    proba = np.asarray(y_proba, dtype=float)
    classes = list(classes)
    present = set(y_true.tolist())
    if len(classes) < 2 or not present.issuperset(classes) or proba.ndim != 2 or proba.shape[1] != len(classes):
        return None
    try:
        if len(classes) == 2:
            return float(roc_auc_score(y_true == classes[1], proba[:, 1]))
        return float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes))
    except ValueError:
        return None
