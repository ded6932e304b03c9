"""The one metric registry: every metric modelci knows, for training, evaluation, the gate and config
validation.

Each `Metric` names its task, its direction (`higher_is_better`), the scikit-learn scorer used by
cross-validated search, the scikit-learn function `compute` uses on the hold-out rows, and the
vectorised function the gate's paired bootstrap uses on a batch of resamples:
  - classification metrics from a batch of confusion matrices (`CMStats`),
  - regression metrics from (B, n) arrays of targets and predictions,
  - roc_auc from predicted probabilities (vectorised in `modelci.gate.stats`).
`tests/test_gate.py` checks the vectorised and scikit-learn values agree.

`compute(task, y_true, y_pred, y_proba=None, classes=None)` returns the document written to
out/metrics.json:

    {"metrics": {name: float, ...},            # scalar metrics (the gate's thresholds use these)
     "per_class": {label: {"precision", "recall", "f1", "support"}},   # classification only
     "confusion_matrix": {"labels": [...], "matrix": [[...], ...]},    # classification only
     "n": int}

For convenience the scalar metrics are ALSO top-level keys (`result["accuracy"]` ==
`result["metrics"]["accuracy"]`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

PER_CLASS_METRICS = ("precision", "recall", "f1")


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den).shape, dtype=float)
    np.divide(num, den, out=out, where=den > 0)
    return out


class CMStats:
    """Counts of a batch of confusion matrices (B, K, K), rows = true, cols = predicted.

    Matches scikit-learn with zero_division=0 and labels = the first `declared` labels (the model's
    classes) plus any other label present in y_true or y_pred; balanced_accuracy averages recall over
    the classes with true rows."""

    def __init__(self, cm: np.ndarray, declared: int = 0):
        cm = np.asarray(cm, dtype=float)
        if cm.ndim == 2:
            cm = cm[None]
        self.tp = np.diagonal(cm, axis1=1, axis2=2)
        self.support = cm.sum(axis=2)
        self.predicted = cm.sum(axis=1)
        self.n = cm.sum(axis=(1, 2))
        self.present = ((self.support + self.predicted) > 0) | (np.arange(cm.shape[-1]) < declared)
        self.has_true = self.support > 0
        self.per_class = {"precision": _safe_div(self.tp, self.predicted),
                          "recall": _safe_div(self.tp, self.support),
                          "f1": _safe_div(2 * self.tp, self.support + self.predicted)}

    def macro(self, name: str) -> np.ndarray:
        return _safe_div((self.per_class[name] * self.present).sum(axis=1), self.present.sum(axis=1))

    def weighted(self, name: str) -> np.ndarray:
        return _safe_div((self.per_class[name] * self.support).sum(axis=1), self.support.sum(axis=1))


def _mse(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    err = p - y
    with np.errstate(over="ignore", invalid="ignore"):
        return np.mean(err * err, axis=1)


def _r2(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        sse = np.sum((p - y) ** 2, axis=1)
        sst = np.sum((y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
        return np.where(sst > 0, 1 - _safe_div(sse, sst), np.where(sse == 0, 1.0, 0.0))


@dataclass(frozen=True)
class Metric:
    name: str
    task: str                    # classification | regression
    higher_is_better: bool
    scorer: str                  # scikit-learn scorer name (cross-validated search)
    sklearn: Callable[..., float] | None  # (y_true, y_pred, labels) -> value; None: roc_auc (probabilities)
    batch: Callable[..., np.ndarray] | None  # CMStats -> (B,) or (y, pred) (B, n) -> (B,); None: roc_auc
    per_class: str | None = None  # the per-class metric that is this metric for one class (slices, deltas)
    needs_proba: bool = False
    default: bool = True         # reported by training when the config lists no `metrics:`


def _skm(fn: str, **kw: Any) -> Callable[..., float]:
    def score(y_true: Any, y_pred: Any, labels: Any = None) -> float:
        from sklearn import metrics as skm

        extra = {"labels": labels, "zero_division": 0} if "average" in kw else {}
        return float(getattr(skm, fn)(y_true, y_pred, **kw, **extra))
    return score


def _balanced_accuracy(y_true: Any, y_pred: Any, labels: Any = None) -> float:
    # recall averaged over the classes present in y_true (sklearn's definition, without its warning
    # for classes only present in y_pred)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    recalls = [float(np.mean(y_pred[y_true == c] == c)) for c in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else float("nan")


def _rmse(y_true: Any, y_pred: Any, labels: Any = None) -> float:
    from sklearn.metrics import mean_squared_error

    return math.sqrt(mean_squared_error(y_true, y_pred))


def _r2_point(y_true: Any, y_pred: Any, labels: Any = None) -> float:
    from sklearn.metrics import r2_score

    return float(r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan")


def _cls(name: str, scorer: str, sk: Callable[..., float], batch: Callable[[CMStats], np.ndarray],
         per_class: str, default: bool = True) -> Metric:
    return Metric(name, "classification", True, scorer, sk, batch, per_class, default=default)


REGISTRY: dict[str, Metric] = {m.name: m for m in [
    _cls("accuracy", "accuracy", _skm("accuracy_score"), lambda s: _safe_div(s.tp.sum(axis=1), s.n), "recall"),
    _cls("balanced_accuracy", "balanced_accuracy", _balanced_accuracy,
         lambda s: _safe_div((s.per_class["recall"] * s.has_true).sum(axis=1), s.has_true.sum(axis=1)), "recall"),
    _cls("f1_macro", "f1_macro", _skm("f1_score", average="macro"), lambda s: s.macro("f1"), "f1"),
    _cls("f1_weighted", "f1_weighted", _skm("f1_score", average="weighted"), lambda s: s.weighted("f1"), "f1"),
    _cls("f1_micro", "f1_micro", _skm("f1_score", average="micro"),
         lambda s: _safe_div(s.tp.sum(axis=1), s.n), "f1", default=False),
    _cls("precision_macro", "precision_macro", _skm("precision_score", average="macro"),
         lambda s: s.macro("precision"), "precision"),
    _cls("precision_weighted", "precision_weighted", _skm("precision_score", average="weighted"),
         lambda s: s.weighted("precision"), "precision", default=False),
    _cls("recall_macro", "recall_macro", _skm("recall_score", average="macro"),
         lambda s: s.macro("recall"), "recall"),
    _cls("recall_weighted", "recall_weighted", _skm("recall_score", average="weighted"),
         lambda s: s.weighted("recall"), "recall", default=False),
    Metric("roc_auc", "classification", True, "roc_auc_ovr", None, None, "recall", needs_proba=True),
    Metric("mae", "regression", False, "neg_mean_absolute_error", _skm("mean_absolute_error"),
           lambda y, p: np.mean(np.abs(p - y), axis=1)),
    Metric("mse", "regression", False, "neg_mean_squared_error", _skm("mean_squared_error"), _mse,
           default=False),
    Metric("rmse", "regression", False, "neg_root_mean_squared_error", _rmse,
           lambda y, p: np.sqrt(_mse(y, p))),
    Metric("r2", "regression", True, "r2", _r2_point, _r2),
]}

NAMES_BY_TASK: dict[str, tuple[str, ...]] = {
    task: tuple(m.name for m in REGISTRY.values() if m.task == task) for task in ("classification", "regression")}
# what training reports when the config lists no `metrics:`
DEFAULT_NAMES_BY_TASK: dict[str, tuple[str, ...]] = {
    task: tuple(n for n in names if REGISTRY[n].default) for task, names in NAMES_BY_TASK.items()}
CLASSIFICATION_METRICS = NAMES_BY_TASK["classification"]
REGRESSION_METRICS = NAMES_BY_TASK["regression"]
HIGHER_IS_BETTER = {name: m.higher_is_better for name, m in REGISTRY.items()}
# config metric name -> scikit-learn scorer name (for cross-validated search)
SKLEARN_SCORERS = {name: m.scorer for name, m in REGISTRY.items()}


def known_metrics(task: str) -> tuple[str, ...]:
    return NAMES_BY_TASK[task]


def get(name: str, task: str | None = None) -> Metric | None:
    """The metric `name` (for `task` when given), or None when modelci does not know it."""
    m = REGISTRY.get(name)
    return m if m is not None and (task is None or m.task == task) else None


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


def compute(task: str, y_true: ArrayLike, y_pred: ArrayLike, y_proba: Any = None,
            classes: Sequence[Any] | None = None, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Score predictions with scikit-learn. `classes` is the column order of `y_proba`
    (estimator.classes_). `names` selects the scalar metrics (default: the task's default metrics,
    `DEFAULT_NAMES_BY_TASK`)."""
    from sklearn import metrics as skm

    true = np.asarray(y_true)
    pred = np.asarray(y_pred)
    out: dict[str, Any] = {"n": len(true)}
    scalars: dict[str, float] = {}
    wanted = list(DEFAULT_NAMES_BY_TASK[task]) if names is None else [n for n in NAMES_BY_TASK[task] if n in names]
    if task == "regression":
        yt, yp = true.astype(float), pred.astype(float)
        for name in wanted:
            scalars[name] = REGISTRY[name].sklearn(yt, yp)  # type: ignore[misc]
    else:
        labels = list(classes) if classes is not None else sorted(set(true.tolist()) | set(pred.tolist()))
        for name in wanted:
            metric = REGISTRY[name]
            if metric.needs_proba:
                auc = _roc_auc(true, y_proba, classes)
                if auc is not None:
                    scalars[name] = auc
            else:
                scalars[name] = metric.sklearn(true, pred, labels)  # type: ignore[misc]
        p, r, f, s = skm.precision_recall_fscore_support(true, pred, labels=labels, zero_division=0)
        out["per_class"] = {str(to_native(lab)): {"precision": float(p[i]), "recall": float(r[i]),
                                                  "f1": float(f[i]), "support": int(s[i])}
                            for i, lab in enumerate(labels)}
        cm = skm.confusion_matrix(true, pred, labels=labels)
        out["confusion_matrix"] = {"labels": to_native(list(labels)), "matrix": cm.tolist()}
    native: dict[str, float | None] = {k: (None if isinstance(v, float) and math.isnan(v) else float(v))
                                       for k, v in scalars.items()}
    out["metrics"] = native
    for k, v in native.items():  # flat access, see module docstring
        out.setdefault(k, v)
    return out


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
