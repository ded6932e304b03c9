"""The gate's statistics: vectorised metrics on batches of resamples, ROC AUC, and the paired
bootstrap of the improvement d = candidate - champion (sign flipped for lower-is-better metrics, so
d > 0 always means "candidate is better"). Metric names and directions come from `modelci.metrics`.

Fail closed: a resample where a metric is undefined (AUC without one of the classes, an overflow) is
dropped and counted; more than `max_dropped_share` dropped, or a non-finite point metric,
difference or bound, is a ModelCIError (exit 1) with a one-line reason (docs/gate.md).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .. import metrics as registry
from ..errors import ModelCIError
from ..metrics import CMStats, _safe_div

PER_CLASS_METRICS = registry.PER_CLASS_METRICS


def supported_metrics(task: str) -> dict[str, bool]:
    """Metrics that can be the primary metric (paired bootstrap) for `task` -> higher is better."""
    return {name: registry.REGISTRY[name].higher_is_better for name in registry.NAMES_BY_TASK[task]}


def classification_metrics_from_cm(cm: np.ndarray, declared: int = 0) -> dict[str, np.ndarray]:
    """Every registry classification metric (except roc_auc) for a batch of confusion matrices."""
    stats = CMStats(cm, declared)
    return {name: m.batch(stats) for name, m in registry.REGISTRY.items()
            if m.task == "classification" and m.batch is not None}


def per_class_from_cm(cm: np.ndarray) -> dict[str, np.ndarray]:
    stats = CMStats(cm)
    return {**{k: v[0] for k, v in stats.per_class.items()}, "support": stats.support[0]}


def regression_batch(y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """y, pred: (B, n) resampled arrays -> every registry regression metric per row."""
    return {name: m.batch(y, pred) for name, m in registry.REGISTRY.items()
            if m.task == "regression" and m.batch is not None}


def _key(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _unique(arr: np.ndarray) -> list[Any]:
    try:
        return list(np.unique(arr))
    except TypeError:  # mixed types
        return list(dict.fromkeys(arr.tolist()))


class Encoded:
    """Labels of y_true/predictions mapped to 0..K-1 once, so resamples are integer work only."""

    def __init__(self, classes: Sequence[Any], y_true: np.ndarray, preds: Iterable[np.ndarray]):
        preds = list(preds)
        labels: list[Any] = list(classes)
        seen = set(map(_key, labels))
        for arr in [y_true, *preds]:
            for value in _unique(arr):
                if _key(value) not in seen:
                    seen.add(_key(value))
                    labels.append(value)
        self.labels = labels
        self.declared = len(classes)
        self.index = {_key(v): i for i, v in enumerate(labels)}
        self.k = len(labels)
        self.y = self.encode(y_true)
        self.codes = [self.y * self.k + self.encode(p) for p in preds]

    def encode(self, arr: np.ndarray) -> np.ndarray:
        return np.fromiter((self.index[_key(v)] for v in arr), dtype=np.int64, count=len(arr))

    def confusion(self, code: np.ndarray) -> np.ndarray:
        return np.bincount(code, minlength=self.k * self.k).reshape(self.k, self.k)


def as_array(values: Any, what: str, task: str) -> np.ndarray:
    arr = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ModelCIError(f"{what}: expected one prediction per row, got shape {arr.shape}")
    if task == "regression":
        try:
            arr = arr.astype(float)
        except (TypeError, ValueError):
            raise ModelCIError(f"{what}: regression values must be numbers") from None
        if not np.all(np.isfinite(arr)):
            raise ModelCIError(f"{what}: contains NaN or infinite values; fix the data or the model")
    else:
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise ModelCIError(f"{what}: contains NaN labels; fix the data or the model")
        if arr.dtype == object and any(v is None or (isinstance(v, float) and math.isnan(v)) for v in arr):
            raise ModelCIError(f"{what}: contains missing labels; fix the data or the model")
    return arr


def point_metrics(task: str, y_true: Any, y_pred: Any, classes: Sequence[Any] | None = None
                  ) -> dict[str, Any]:
    """Vectorised metrics on all rows. Classification also returns per-class and the confusion matrix."""
    y = as_array(y_true, "hold-out target", task)
    p = as_array(y_pred, "predictions", task)
    if task == "regression":
        with np.errstate(over="ignore", invalid="ignore"):
            return {"metrics": {k: float(v[0]) for k, v in regression_batch(y[None], p[None]).items()}}
    enc = Encoded(classes or [], y, [p])
    cm = enc.confusion(enc.codes[0])
    pcs = per_class_from_cm(cm)
    return {
        "metrics": {k: float(v[0]) for k, v in classification_metrics_from_cm(cm, enc.declared).items()},
        "per_class": {str(label): {m: float(pcs[m][i]) for m in ("precision", "recall", "f1", "support")}
                      for i, label in enumerate(enc.labels)},
        "labels": [_key(v) for v in enc.labels],
        "confusion_matrix": cm.tolist(),
    }


class AUC:
    """ROC AUC under row weights, vectorised over resamples: binary = AUC of the second class,
    multiclass = one-vs-rest macro average (as modelci.metrics / sklearn). Ties count one half."""

    def __init__(self, y: np.ndarray, proba: Any, classes: Sequence[Any] | None, who: str):
        proba = np.asarray(proba, dtype=float)
        classes = list(classes or [])
        if len(classes) < 2 or proba.ndim != 2 or proba.shape != (len(y), len(classes)):
            raise ModelCIError(f"gate: roc_auc needs the {who} model's class probabilities, one column per "
                               f"class ({len(classes)} classes), got shape {proba.shape}")
        if not np.all(np.isfinite(proba)):
            raise ModelCIError(f"gate: the {who} model's probabilities contain NaN or infinite values")
        keys = [_key(v) for v in y]
        missing = [c for c in classes if _key(c) not in set(keys)]
        if missing:
            raise ModelCIError(f"gate: roc_auc is undefined: class(es) {missing} have no hold-out rows; "
                               "choose another gate.primary_metric or add data")
        targets = [1] if len(classes) == 2 else range(len(classes))
        self.parts = []
        for k in targets:
            order = np.argsort(proba[:, k], kind="stable")
            scores = proba[order, k]
            starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
            pos = np.fromiter((keys[i] == _key(classes[k]) for i in order), dtype=bool, count=len(y))
            self.parts.append((order, starts, pos))

    def batch(self, weights: np.ndarray) -> np.ndarray:
        """weights: (B, n) row counts -> (B,) AUC (NaN where a resample lacks a class)."""
        out = np.zeros(weights.shape[0])
        for order, starts, pos in self.parts:
            w = weights[:, order].astype(float)
            p = np.add.reduceat(w * pos, starts, axis=1)
            q = np.add.reduceat(w * ~pos, starts, axis=1)
            below = np.cumsum(q, axis=1) - q
            num = (p * (below + 0.5 * q)).sum(axis=1)
            den = p.sum(axis=1) * q.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out += np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
        return out / len(self.parts)


def roc_auc(y_true: Any, proba: Any, classes: Sequence[Any]) -> float:
    y = as_array(y_true, "hold-out target", "classification")
    return float(AUC(y, proba, classes, "candidate").batch(np.ones((1, len(y))))[0])


def _per_class_values(stats: CMStats, name: str) -> np.ndarray:
    """(B, K) per-class metric, NaN where it is undefined in that resample (no rows to measure it)."""
    den = {"precision": stats.predicted, "recall": stats.support,
           "f1": stats.support + stats.predicted}[name]
    return np.where(den > 0, stats.per_class[name], np.nan)


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def paired_bootstrap(task: str, metric: str, y_true: Any, candidate: Any, champion: Any, *,
                     samples: int = 1000, confidence: float = 0.95, seed: int = 0,
                     classes: Sequence[Any] | None = None, candidate_proba: Any = None,
                     champion_proba: Any = None, max_dropped_share: float = 0.1,
                     per_class: str | None = None, strict: bool = True,
                     also: Sequence[str] = ()) -> dict[str, Any]:
    """Paired bootstrap of the improvement d on `metric` (positive = candidate better).
    roc_auc needs both models' probabilities with columns in `classes` order.

    Every resample draws n row indices with replacement and scores BOTH models on those rows.
    Returns point estimates, the percentile interval [lo, hi], the kept d samples and the number of
    dropped resamples; with `per_class` (a per-class metric) also the per-class deltas and intervals.
    `strict=False` (slices) returns lo/hi None instead of raising when the numbers are unusable.
    `also` names other metrics whose improvement and interval come from the same resamples
    (`others`; not for roc_auc as the primary metric).
    """
    y = as_array(y_true, "hold-out target", task)
    a = as_array(candidate, "candidate predictions", task)
    b = as_array(champion, "champion predictions", task)
    n = len(y)
    if not (len(a) == len(b) == n):
        raise ModelCIError(f"gate: candidate ({len(a)}), champion ({len(b)}) and hold-out ({n}) must "
                           "have the same rows; score both models on the same hold-out set")
    if n < 2 and strict:
        raise ModelCIError("gate: the hold-out set has fewer than 2 rows; add data before gating")
    table = supported_metrics(task)
    if metric not in table:
        raise ModelCIError(f"gate: primary metric {metric!r} is not available for {task}; "
                           f"use one of {', '.join(table)}")
    sign = 1.0 if table[metric] else -1.0
    rng = np.random.default_rng(seed)
    chunk = max(1, min(samples, 2_000_000 // max(n, 1)))
    diffs = np.empty(samples)
    others = [m for m in dict.fromkeys(also) if m != metric and m in table and registry.REGISTRY[m].batch]
    other_diffs = {m: np.empty(samples) for m in others}
    other_points: dict[str, float] = {}
    class_diffs: np.ndarray | None = None
    class_points: list[dict[str, Any]] = []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if registry.REGISTRY[metric].needs_proba:
            if candidate_proba is None or champion_proba is None:
                raise ModelCIError(f"gate.primary_metric: {metric} needs predict_proba from both the candidate "
                                   "and the champion model; choose a metric computed from predictions")
            auc_a = AUC(y, candidate_proba, classes, "candidate")
            auc_b = AUC(y, champion_proba, classes, "champion")
            ones = np.ones((1, n))
            point_a, point_b = auc_a.batch(ones)[0], auc_b.batch(ones)[0]
            for start in range(0, samples, chunk):
                m = min(chunk, samples - start)
                idx = rng.integers(0, n, size=(m, n))
                weights = np.bincount((idx + (np.arange(m) * n)[:, None]).ravel(),
                                      minlength=m * n).reshape(m, n)
                diffs[start:start + m] = sign * (auc_a.batch(weights) - auc_b.batch(weights))
        elif task == "classification":
            enc = Encoded(classes or [], y, [a, b])
            ca, cb = enc.codes
            kk = enc.k * enc.k
            fn = registry.REGISTRY[metric].batch
            sa, sb = CMStats(enc.confusion(ca), enc.declared), CMStats(enc.confusion(cb), enc.declared)
            point_a, point_b = fn(sa)[0], fn(sb)[0]  # type: ignore[misc]
            for m_ in others:
                f_ = registry.REGISTRY[m_].batch
                other_points[m_] = float(f_(sa)[0] - f_(sb)[0])  # type: ignore[misc]
            if per_class:
                class_diffs = np.empty((samples, enc.k))
                va, vb = _per_class_values(sa, per_class)[0], _per_class_values(sb, per_class)[0]
                class_points = [{"class": str(_key(lab)), "support": int(sa.support[0][i]),
                                 "candidate": _finite(va[i]), "champion": _finite(vb[i])}
                                for i, lab in enumerate(enc.labels)]
            for start in range(0, samples, chunk):
                m = min(chunk, samples - start)
                idx = rng.integers(0, n, size=(m, n))
                offset = (np.arange(m) * kk)[:, None]
                stats = [CMStats(np.bincount((code[idx] + offset).ravel(), minlength=m * kk)
                                 .reshape(m, enc.k, enc.k), enc.declared) for code in (ca, cb)]
                diffs[start:start + m] = sign * (fn(stats[0]) - fn(stats[1]))  # type: ignore[misc]
                for m_ in others:
                    f_ = registry.REGISTRY[m_].batch
                    other_diffs[m_][start:start + m] = f_(stats[0]) - f_(stats[1])  # type: ignore[misc]
                if class_diffs is not None and per_class:
                    class_diffs[start:start + m] = (_per_class_values(stats[0], per_class)
                                                    - _per_class_values(stats[1], per_class))
        else:
            fn = registry.REGISTRY[metric].batch
            point_a, point_b = fn(y[None], a[None])[0], fn(y[None], b[None])[0]  # type: ignore[misc]
            for m_ in others:
                f_ = registry.REGISTRY[m_].batch
                other_points[m_] = float(f_(y[None], a[None])[0] - f_(y[None], b[None])[0])  # type: ignore[misc]
            for start in range(0, samples, chunk):
                m = min(chunk, samples - start)
                idx = rng.integers(0, n, size=(m, n))
                yy, aa, bb = y[idx], a[idx], b[idx]
                diffs[start:start + m] = sign * (fn(yy, aa) - fn(yy, bb))  # type: ignore[misc]
                for m_ in others:
                    f_ = registry.REGISTRY[m_].batch
                    other_diffs[m_][start:start + m] = f_(yy, aa) - f_(yy, bb)  # type: ignore[misc]
    kept = diffs[np.isfinite(diffs)]
    dropped = samples - len(kept)
    improvement = sign * (point_a - point_b)
    result: dict[str, Any] = {
        "metric": metric, "higher_is_better": bool(table[metric]), "candidate": float(point_a),
        "champion": float(point_b), "diff": float(point_a - point_b), "improvement": float(improvement),
        "lo": None, "hi": None, "confidence": confidence, "samples": samples, "seed": seed,
        "n_rows": n, "dropped": int(dropped), "diffs": kept,
    }
    problem = None
    if not all(math.isfinite(float(v)) for v in (point_a, point_b, improvement)):
        problem = (f"the point estimate of {metric} is not finite (candidate {float(point_a)}, champion "
                   f"{float(point_b)}); check the hold-out data and the models' predictions for extreme values")
    elif dropped > max_dropped_share * samples or not len(kept):
        problem = (f"{metric} is undefined in {dropped} of {samples} bootstrap resamples (more than "
                   f"gate.max_dropped_share = {max_dropped_share:g}); a class is too rare or values overflow: "
                   "fix the data or choose another gate.primary_metric")
    else:
        lo, hi = _interval(kept, confidence)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            problem = f"the bootstrap interval of {metric} is not finite ([{lo}, {hi}])"
        result["lo"], result["hi"] = lo, hi
    if problem:
        if strict:
            raise ModelCIError(f"gate: {problem}")
        result["lo"] = result["hi"] = None
        result["problem"] = problem
    result["others"] = []
    for m_ in others if other_points else []:
        sgn = 1.0 if table[m_] else -1.0
        col = sgn * other_diffs[m_][np.isfinite(other_diffs[m_])]
        row: dict[str, Any] = {"metric": m_, "improvement": _finite(sgn * other_points[m_]), "lo": None, "hi": None}
        if len(col) and row["improvement"] is not None:
            row["lo"], row["hi"] = _interval(col, confidence)
        result["others"].append(row)
    if class_diffs is not None:
        alpha = 1.0 - confidence
        for i, row in enumerate(class_points):
            col = class_diffs[:, i][np.isfinite(class_diffs[:, i])]
            both = row["candidate"] is not None and row["champion"] is not None
            row["delta"] = row["candidate"] - row["champion"] if both else None
            if len(col) and row["delta"] is not None:
                lo, hi = np.quantile(col, [alpha / 2, 1 - alpha / 2])
                row["lo"], row["hi"] = float(lo), float(hi)
            else:
                row["lo"] = row["hi"] = None
        result["per_class"] = class_points
    return result


def rows_needed(n_rows: int, width: float, max_width: float) -> int:
    """Hold-out rows for an interval of `max_width` (the width shrinks as 1/sqrt(rows))."""
    if max_width <= 0 or width <= 0:
        return n_rows
    return int(math.ceil(n_rows * (width / max_width) ** 2))


__all__ = ["AUC", "Encoded", "PER_CLASS_METRICS", "as_array", "classification_metrics_from_cm",
           "paired_bootstrap", "per_class_from_cm", "point_metrics", "regression_batch", "roc_auc",
           "rows_needed", "supported_metrics", "_safe_div"]
