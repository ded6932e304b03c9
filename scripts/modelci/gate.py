"""The promotion gate: may this candidate model replace the champion?

Pure core (no file or model I/O here except the verdict check used by deploy):

  policy = normalize_policy(config["gate"], task, source="model/modelci.yml", default_seed=config.get("seed"))
  result = evaluate(policy, task, y_true, candidate_pred, champion_pred_or_None, classes=[...])

Rule (docs/DECISIONS "Evaluation set and champion"): on the primary metric, d = candidate - champion,
expressed as an *improvement* (for lower-is-better metrics such as mae/rmse the sign is flipped, so
d > 0 always means "candidate is better"). A paired bootstrap resamples the SAME hold-out row indices
for both models and recomputes both metrics on each resample, giving the percentile interval [lo, hi]:

  REJECT     if hi < -allowed_regression   (confidently worse by more than the allowed regression)
  PROMOTE    if lo > 0                      (confidently better)
  NO_CHANGE  otherwise                      (promoted only when gate.promote_no_change is true)

Absolute thresholds (every listed metric, min and/or max) and per-class minimums are checked on the
candidate first; any failure is a REJECT. Without a champion (first model) only those apply.

Dry run: the verdict is computed and reported exactly the same way, but it never authorises a deploy:
verdict.json has "dry_run": true and "passed": false, whatever the outcome; "would_pass" records what
the outcome would have been. The command exits 0 in dry-run mode (it reports, it does not block), and
`require_passing_verdict` refuses any verdict with dry_run true, so a dry-run pipeline cannot leak a
model into an environment even if someone edits "passed" by hand.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .errors import EXIT_GATE_NO_CHANGE, EXIT_GATE_REJECTED, EXIT_OK, ModelCIError

VERDICT_SCHEMA = "modelci.gate.verdict/1"
PROMOTE, REJECT, NO_CHANGE = "PROMOTE", "REJECT", "NO_CHANGE"

# Metrics the gate computes itself (vectorised, so they can be bootstrapped). Value: higher is better?
CLASSIFICATION_METRICS: dict[str, bool] = {
    "accuracy": True,
    "balanced_accuracy": True,
    "f1_macro": True,
    "f1_weighted": True,
    "f1_micro": True,
    "precision_macro": True,
    "precision_weighted": True,
    "recall_macro": True,
    "recall_weighted": True,
}
REGRESSION_METRICS: dict[str, bool] = {"mae": False, "mse": False, "rmse": False, "r2": True}
# Computed from predicted probabilities (needs predict_proba from every model compared).
PROBA_METRICS: dict[str, bool] = {"roc_auc": True}
PER_CLASS_METRICS = ("precision", "recall", "f1")
# Direction of metrics the gate does not compute itself but may find in modelci.metrics output.
OTHER_DIRECTIONS: dict[str, bool] = {
    "roc_auc": True, "roc_auc_ovr": True, "average_precision": True, "log_loss": False,
    "brier": False, "mape": False, "median_ae": False, "max_error": False, "explained_variance": True,
}
LOWER_IS_BETTER_HINTS = ("loss", "error", "mae", "mse", "rmse", "mape", "brier")

_POLICY_KEYS = {"primary_metric", "thresholds", "allowed_regression", "per_class_min",
                "promote_no_change", "dry_run", "bootstrap"}
_BOOTSTRAP_KEYS = {"samples", "confidence", "seed"}


def higher_is_better(metric: str) -> bool:
    for table in (CLASSIFICATION_METRICS, REGRESSION_METRICS, OTHER_DIRECTIONS):
        if metric in table:
            return table[metric]
    return not any(h in metric for h in LOWER_IS_BETTER_HINTS)


def supported_metrics(task: str) -> dict[str, bool]:
    """Metrics that can be the primary metric (paired bootstrap) for `task`."""
    return {**CLASSIFICATION_METRICS, **PROBA_METRICS} if task == "classification" else REGRESSION_METRICS


# --------------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------------
def _num(value: Any, where: str, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ModelCIError(f"{where}: expected a finite number, got {value!r}; {fix}")
    return float(value)


def normalize_policy(gate: dict[str, Any] | None, task: str, *, source: str = "config",
                     default_seed: int | None = None) -> dict[str, Any]:
    """Validate `gate:` and fill defaults. Raises ModelCIError naming the field on bad input."""
    if task not in ("classification", "regression"):
        raise ModelCIError(f"{source}: task: must be classification or regression, got {task!r}")
    gate = {} if gate is None else gate
    if not isinstance(gate, dict):
        raise ModelCIError(f"{source}: gate: must be a mapping; see the gate section of the README")
    unknown = sorted(set(gate) - _POLICY_KEYS)
    if unknown:
        raise ModelCIError(f"{source}: gate: unknown key(s) {', '.join(unknown)}; "
                           f"allowed: {', '.join(sorted(_POLICY_KEYS))}")
    primary = gate.get("primary_metric") or ("f1_macro" if task == "classification" else "rmse")
    known = supported_metrics(task)
    if primary not in known:
        raise ModelCIError(f"{source}: gate.primary_metric: {primary!r} cannot be compared with a paired "
                           f"bootstrap for a {task} model; use one of {', '.join(known)}")

    thresholds: dict[str, dict[str, float]] = {}
    raw_thr = gate.get("thresholds") or {}
    if not isinstance(raw_thr, dict):
        raise ModelCIError(f"{source}: gate.thresholds: must map metric -> {{min: x}} or {{max: x}}")
    for metric, spec in raw_thr.items():
        where = f"{source}: gate.thresholds.{metric}"
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            spec = {"min" if higher_is_better(metric) else "max": spec}
        if isinstance(spec, dict):
            spec = {k: v for k, v in spec.items() if v is not None}
        if not isinstance(spec, dict) or not spec or set(spec) - {"min", "max"}:
            raise ModelCIError(f"{where}: must be {{min: x}} and/or {{max: x}}, got {spec!r}")
        thresholds[str(metric)] = {k: _num(v, f"{where}.{k}", "write a number") for k, v in spec.items()}

    allowed = _num(gate.get("allowed_regression", 0.0), f"{source}: gate.allowed_regression",
                   "use 0 or a small positive number in the metric's units")
    if allowed < 0:
        raise ModelCIError(f"{source}: gate.allowed_regression: must be >= 0, got {allowed}; "
                           "it is the largest tolerated drop of the primary metric")

    per_class: dict[str, float] = {}
    raw_pc = gate.get("per_class_min") or {}
    if raw_pc and task != "classification":
        raise ModelCIError(f"{source}: gate.per_class_min: only applies to classification; remove it")
    if not isinstance(raw_pc, dict):
        raise ModelCIError(f"{source}: gate.per_class_min: must map metric -> minimum, e.g. {{recall: 0.5}}")
    for metric, value in raw_pc.items():
        if metric not in PER_CLASS_METRICS:
            raise ModelCIError(f"{source}: gate.per_class_min.{metric}: unknown per-class metric; "
                               f"use one of {', '.join(PER_CLASS_METRICS)}")
        per_class[metric] = _num(value, f"{source}: gate.per_class_min.{metric}", "use a number in [0, 1]")

    flags = {}
    for key in ("promote_no_change", "dry_run"):
        value = gate.get(key, False)
        if not isinstance(value, bool):
            raise ModelCIError(f"{source}: gate.{key}: must be true or false, got {value!r}")
        flags[key] = value

    boot = gate.get("bootstrap") or {}
    if not isinstance(boot, dict) or set(boot) - _BOOTSTRAP_KEYS:
        raise ModelCIError(f"{source}: gate.bootstrap: must be a mapping with keys "
                           f"{', '.join(sorted(_BOOTSTRAP_KEYS))}, got {boot!r}")
    samples = boot.get("samples", 1000)
    if isinstance(samples, bool) or not isinstance(samples, int) or not 100 <= samples <= 100_000:
        raise ModelCIError(f"{source}: gate.bootstrap.samples: must be an integer in [100, 100000], "
                           f"got {samples!r}")
    confidence = _num(boot.get("confidence", 0.95), f"{source}: gate.bootstrap.confidence",
                      "use e.g. 0.95")
    if not 0.5 <= confidence < 1:
        raise ModelCIError(f"{source}: gate.bootstrap.confidence: must be in [0.5, 1), got {confidence}")
    seed = boot.get("seed", default_seed if default_seed is not None else 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ModelCIError(f"{source}: gate.bootstrap.seed: must be a non-negative integer, got {seed!r}")

    return {
        "primary_metric": primary,
        "thresholds": thresholds,
        "allowed_regression": allowed,
        "per_class_min": per_class,
        "promote_no_change": flags["promote_no_change"],
        "dry_run": flags["dry_run"],
        "bootstrap": {"samples": samples, "confidence": confidence, "seed": seed},
    }


# --------------------------------------------------------------------------------------------------
# Vectorised metrics
# --------------------------------------------------------------------------------------------------
def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den).shape, dtype=float)
    np.divide(num, den, out=out, where=den > 0)
    return out


def classification_metrics_from_cm(cm: np.ndarray, declared: int = 0) -> dict[str, np.ndarray]:
    """Metrics for a batch of confusion matrices (B, K, K), rows = true, cols = predicted.

    Matches sklearn with zero_division=0 and labels = the first `declared` labels (the model's
    classes, as modelci.metrics passes them) plus any other label present in y_true or y_pred of that
    sample; balanced_accuracy averages recall over the classes with true rows.
    """
    cm = np.asarray(cm, dtype=float)
    if cm.ndim == 2:
        cm = cm[None]
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support = cm.sum(axis=2)
    predicted = cm.sum(axis=1)
    n = cm.sum(axis=(1, 2))
    present = ((support + predicted) > 0) | (np.arange(cm.shape[-1]) < declared)
    has_true = support > 0
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, support + predicted)
    n_present = present.sum(axis=1)
    out = {
        "accuracy": _safe_div(tp.sum(axis=1), n),
        "balanced_accuracy": _safe_div((recall * has_true).sum(axis=1), has_true.sum(axis=1)),
        "f1_micro": _safe_div(tp.sum(axis=1), n),
    }
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[f"{name}_macro"] = _safe_div((values * present).sum(axis=1), n_present)
        out[f"{name}_weighted"] = _safe_div((values * support).sum(axis=1), support.sum(axis=1))
    return out


def per_class_from_cm(cm: np.ndarray) -> dict[str, np.ndarray]:
    cm = np.asarray(cm, dtype=float)
    tp = np.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    return {"precision": _safe_div(tp, predicted), "recall": _safe_div(tp, support),
            "f1": _safe_div(2 * tp, support + predicted), "support": support}


def _regression_batch(y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """y, pred: (B, n) resampled arrays -> metrics per row."""
    err = pred - y
    mse = np.mean(err * err, axis=1)
    sst = np.sum((y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    sse = mse * y.shape[1]
    r2 = np.where(sst > 0, 1 - _safe_div(sse, sst), np.where(sse == 0, 1.0, 0.0))
    return {"mae": np.mean(np.abs(err), axis=1), "mse": mse, "rmse": np.sqrt(mse), "r2": r2}


class _Encoded:
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


def _as_array(values: Any, what: str, task: str) -> np.ndarray:
    arr = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values)
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
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
    """Metrics the gate computes itself, on all rows. Classification also returns per-class and cm."""
    y = _as_array(y_true, "hold-out target", task)
    p = _as_array(y_pred, "predictions", task)
    if task == "regression":
        return {"metrics": {k: float(v[0]) for k, v in _regression_batch(y[None], p[None]).items()}}
    enc = _Encoded(classes or [], y, [p])
    cm = enc.confusion(enc.codes[0])
    pcs = per_class_from_cm(cm)
    return {
        "metrics": {k: float(v[0]) for k, v in classification_metrics_from_cm(cm, enc.declared).items()},
        "per_class": {str(label): {m: float(pcs[m][i]) for m in ("precision", "recall", "f1", "support")}
                      for i, label in enumerate(enc.labels)},
        "labels": [_key(v) for v in enc.labels],
        "confusion_matrix": cm.tolist(),
    }


class _AUC:
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
    y = _as_array(y_true, "hold-out target", "classification")
    return float(_AUC(y, proba, classes, "candidate").batch(np.ones((1, len(y))))[0])


def paired_bootstrap(task: str, metric: str, y_true: Any, candidate: Any, champion: Any, *,
                     samples: int = 1000, confidence: float = 0.95, seed: int = 0,
                     classes: Sequence[Any] | None = None, candidate_proba: Any = None,
                     champion_proba: Any = None) -> dict[str, Any]:
    """Paired bootstrap of the improvement d on `metric` (positive = candidate better).
    roc_auc needs both models' probabilities with columns in `classes` order.

    Every resample draws n row indices with replacement and scores BOTH models on those rows.
    Returns point estimates, the percentile interval [lo, hi] and the d samples.
    """
    y = _as_array(y_true, "hold-out target", task)
    a = _as_array(candidate, "candidate predictions", task)
    b = _as_array(champion, "champion predictions", task)
    n = len(y)
    if not (len(a) == len(b) == n):
        raise ModelCIError(f"gate: candidate ({len(a)}), champion ({len(b)}) and hold-out ({n}) must "
                           "have the same rows; score both models on the same hold-out set")
    if n < 2:
        raise ModelCIError("gate: the hold-out set has fewer than 2 rows; add data before gating")
    table = supported_metrics(task)
    if metric not in table:
        raise ModelCIError(f"gate: primary metric {metric!r} is not available for {task}; "
                           f"use one of {', '.join(table)}")
    sign = 1.0 if table[metric] else -1.0
    rng = np.random.default_rng(seed)
    chunk = max(1, min(samples, 2_000_000 // n))
    diffs = np.empty(samples)
    if metric in PROBA_METRICS:
        if candidate_proba is None or champion_proba is None:
            raise ModelCIError(f"gate.primary_metric: {metric} needs predict_proba from both the candidate "
                               "and the champion model; choose a metric computed from predictions")
        auc_a = _AUC(y, candidate_proba, classes, "candidate")
        auc_b = _AUC(y, champion_proba, classes, "champion")
        ones = np.ones((1, n))
        point_a, point_b = auc_a.batch(ones)[0], auc_b.batch(ones)[0]
        for start in range(0, samples, chunk):
            m = min(chunk, samples - start)
            idx = rng.integers(0, n, size=(m, n))
            weights = np.bincount((idx + (np.arange(m) * n)[:, None]).ravel(), minlength=m * n).reshape(m, n)
            diffs[start:start + m] = sign * (auc_a.batch(weights) - auc_b.batch(weights))
        diffs = diffs[np.isfinite(diffs)]  # resamples without some class: AUC undefined, dropped
        if len(diffs) < samples // 2:
            raise ModelCIError("gate: roc_auc is undefined in most bootstrap resamples (a class is too "
                               "rare in the hold-out set); choose another gate.primary_metric")
    elif task == "classification":
        enc = _Encoded(classes or [], y, [a, b])
        ca, cb = enc.codes
        kk = enc.k * enc.k
        point_a = classification_metrics_from_cm(enc.confusion(ca), enc.declared)[metric][0]
        point_b = classification_metrics_from_cm(enc.confusion(cb), enc.declared)[metric][0]
        for start in range(0, samples, chunk):
            m = min(chunk, samples - start)
            idx = rng.integers(0, n, size=(m, n))
            offset = (np.arange(m) * kk)[:, None]
            cms = []
            for code in (ca, cb):
                flat = (code[idx] + offset).ravel()
                cms.append(np.bincount(flat, minlength=m * kk).reshape(m, enc.k, enc.k))
            va = classification_metrics_from_cm(cms[0], enc.declared)[metric]
            vb = classification_metrics_from_cm(cms[1], enc.declared)[metric]
            diffs[start:start + m] = sign * (va - vb)
    else:
        point_a = _regression_batch(y[None], a[None])[metric][0]
        point_b = _regression_batch(y[None], b[None])[metric][0]
        for start in range(0, samples, chunk):
            m = min(chunk, samples - start)
            idx = rng.integers(0, n, size=(m, n))
            yy = y[idx]
            va = _regression_batch(yy, a[idx])[metric]
            vb = _regression_batch(yy, b[idx])[metric]
            diffs[start:start + m] = sign * (va - vb)
    alpha = 1.0 - confidence
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return {
        "metric": metric,
        "higher_is_better": bool(table[metric]),
        "candidate": float(point_a),
        "champion": float(point_b),
        "diff": float(point_a - point_b),
        "improvement": float(sign * (point_a - point_b)),
        "lo": float(lo),
        "hi": float(hi),
        "confidence": confidence,
        "samples": samples,
        "seed": seed,
        "n_rows": n,
        "diffs": diffs,
    }


# --------------------------------------------------------------------------------------------------
# Decision
# --------------------------------------------------------------------------------------------------
def decide(lo: float, hi: float, allowed_regression: float) -> str:
    if hi < -allowed_regression:
        return REJECT
    if lo > 0:
        return PROMOTE
    return NO_CHANGE


def _merge_metrics(own: dict[str, float], extra: dict[str, Any] | None, who: str) -> dict[str, float]:
    merged = dict(own)
    for name, value in (extra or {}).items():
        if name in merged or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # the gate's own computation wins (it is the one the bootstrap uses)
        merged[name] = float(value)
    return merged


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def evaluate(policy: dict[str, Any], task: str, y_true: Any, candidate_pred: Any,
             champion_pred: Any | None = None, *, classes: Sequence[Any] | None = None,
             candidate_extra: dict[str, Any] | None = None,
             champion_extra: dict[str, Any] | None = None,
             display: Sequence[str] | None = None, candidate_proba: Any = None,
             champion_proba: Any = None) -> dict[str, Any]:
    """Apply the policy. `display` orders the metrics shown to people (table, plot; default: all;
    the primary and threshold metrics are always shown). Returns a dict with verdict, passed, dry_run, would_pass, checks, primary,
    metrics and per-class details (no model identity: the command adds sha256 etc.)."""
    cand = point_metrics(task, y_true, candidate_pred, classes)
    if candidate_proba is not None and classes and policy["primary_metric"] in PROBA_METRICS:
        cand["metrics"]["roc_auc"] = roc_auc(y_true, candidate_proba, classes)
    cand_metrics = _merge_metrics(cand["metrics"], candidate_extra, "candidate")
    champ = None
    champ_metrics: dict[str, float] | None = None
    if champion_pred is not None:
        champ = point_metrics(task, y_true, champion_pred, classes)
        if champion_proba is not None and classes and policy["primary_metric"] in PROBA_METRICS:
            champ["metrics"]["roc_auc"] = roc_auc(y_true, champion_proba, classes)
        champ_metrics = _merge_metrics(champ["metrics"], champion_extra, "champion")

    for name, value in cand_metrics.items():
        if not math.isfinite(value) and (name in policy["thresholds"] or name == policy["primary_metric"]):
            raise ModelCIError(f"gate: candidate metric {name} is {value}; cannot gate on it, "
                               "check the hold-out data and the model's predictions")

    checks: list[dict[str, Any]] = []
    for metric, spec in policy["thresholds"].items():
        if metric not in cand_metrics:
            raise ModelCIError(f"gate.thresholds.{metric}: metric was not computed for this {task} "
                               f"model; available: {', '.join(sorted(cand_metrics))}")
        value = cand_metrics[metric]
        for bound, limit in spec.items():
            ok = value >= limit if bound == "min" else value <= limit
            op = ">=" if bound == "min" else "<="
            checks.append({
                "name": f"threshold {metric} {op} {limit:g}", "kind": "threshold", "metric": metric,
                "bound": bound, "limit": limit, "value": value, "passed": bool(ok),
                "message": f"{metric} = {value:.4f} {'meets' if ok else 'fails'} {bound} {limit:g}",
            })

    if policy["per_class_min"]:
        per_class = cand["per_class"]
        wanted = [str(c) for c in (classes or [])] or [str(v) for v in _unique(np.asarray(
            _as_array(y_true, "hold-out target", task)))]
        for metric, limit in policy["per_class_min"].items():
            for label in wanted:
                row = per_class.get(label, {"support": 0.0})
                if not row.get("support"):
                    checks.append({
                        "name": f"per-class {metric}[{label}] >= {limit:g}", "kind": "per_class",
                        "metric": metric, "class": label, "limit": limit, "value": None, "passed": False,
                        "message": f"class {label!r} has no hold-out rows, so its {metric} cannot be "
                                   "verified; add rows of this class to the data",
                    })
                    continue
                value = row[metric]
                ok = value >= limit
                checks.append({
                    "name": f"per-class {metric}[{label}] >= {limit:g}", "kind": "per_class",
                    "metric": metric, "class": label, "limit": limit, "value": value, "passed": bool(ok),
                    "message": f"{metric} of class {label!r} = {value:.4f} "
                               f"{'meets' if ok else 'is below'} {limit:g}",
                })

    absolute_ok = all(c["passed"] for c in checks)
    primary: dict[str, Any]
    diffs = None
    metric = policy["primary_metric"]
    if metric not in cand_metrics:
        raise ModelCIError(f"gate.primary_metric: {metric} was not computed; "
                           f"available: {', '.join(sorted(cand_metrics))}")
    if champion_pred is None:
        primary = {"metric": metric, "higher_is_better": higher_is_better(metric),
                   "candidate": cand_metrics[metric], "champion": None, "diff": None,
                   "improvement": None, "lo": None, "hi": None, "comparison": None}
        checks.append({"name": f"champion comparison on {metric}", "kind": "champion", "metric": metric,
                       "passed": True, "skipped": True, "value": None,
                       "message": "no champion (first model): thresholds only"})
        comparison = PROMOTE
    else:
        boot = policy["bootstrap"]
        res = paired_bootstrap(task, metric, y_true, candidate_pred, champion_pred,
                               samples=boot["samples"], confidence=boot["confidence"],
                               seed=boot["seed"], classes=classes, candidate_proba=candidate_proba,
                               champion_proba=champion_proba)
        diffs = res.pop("diffs")
        comparison = decide(res["lo"], res["hi"], policy["allowed_regression"])
        res["comparison"] = comparison
        res["allowed_regression"] = policy["allowed_regression"]
        primary = res
        interval = (f"improvement {res['improvement']:+.4f}, {int(res['confidence'] * 100)}% interval "
                    f"[{res['lo']:+.4f}, {res['hi']:+.4f}]")
        if comparison == PROMOTE:
            ok, msg = True, f"candidate is better on {metric}: {interval}, lower bound > 0"
        elif comparison == REJECT:
            ok, msg = False, (f"candidate is worse on {metric}: {interval}, upper bound < "
                              f"-{policy['allowed_regression']:g} (allowed regression)")
        else:
            ok = policy["promote_no_change"]
            msg = (f"no meaningful difference on {metric}: {interval} contains 0 or lies within the "
                   f"allowed regression; promote_no_change is {str(ok).lower()}")
        checks.append({"name": f"champion comparison on {metric}", "kind": "champion", "metric": metric,
                       "passed": bool(ok), "value": res["improvement"], "message": msg,
                       "comparison": comparison})

    if not absolute_ok:
        verdict = REJECT
    else:
        verdict = comparison
    would_pass = verdict == PROMOTE or (verdict == NO_CHANGE and policy["promote_no_change"])
    dry_run = bool(policy["dry_run"])
    reasons = [c["message"] for c in checks if not c["passed"]]
    shown = [m for m in [metric, *(display or cand_metrics), *policy["thresholds"]] if m in cand_metrics]
    return {
        "verdict": verdict,
        "passed": bool(would_pass and not dry_run),
        "would_pass": bool(would_pass),
        "dry_run": dry_run,
        "checks": checks,
        "primary": primary,
        "reasons": reasons,
        "metrics": {"candidate": cand_metrics, "champion": champ_metrics},
        "display_metrics": list(dict.fromkeys(shown)),
        "per_class": {"candidate": cand.get("per_class"), "champion": (champ or {}).get("per_class")},
        "confusion_matrix": {"labels": cand.get("labels"), "candidate": cand.get("confusion_matrix"),
                             "champion": (champ or {}).get("confusion_matrix")},
        "policy": policy,
        "_diffs": diffs,  # bootstrap samples for the plot; stripped before writing
    }


def exit_code(result: dict[str, Any]) -> int:
    """0 passed (or any dry run: it reports, it does not block), 2 rejected, 3 NO_CHANGE not promotable."""
    if result["dry_run"] or result["passed"]:
        return EXIT_OK
    return EXIT_GATE_REJECTED if result["verdict"] == REJECT else EXIT_GATE_NO_CHANGE


# --------------------------------------------------------------------------------------------------
# The check deploy uses
# --------------------------------------------------------------------------------------------------
def require_passing_verdict(verdict_path: str | os.PathLike[str], model_dir: str | os.PathLike[str]
                            ) -> dict[str, Any]:
    """Refuse (ModelCIError) unless verdict_path is a passing, non-dry-run verdict for exactly the
    model in model_dir (whose model.joblib is re-hashed here). Returns the verdict."""
    from .artifact import read_json, verify_model

    verdict = read_json(verdict_path, "gate verdict (verdict.json)")
    where = f"{verdict_path}"
    if not isinstance(verdict, dict) or verdict.get("schema") != VERDICT_SCHEMA:
        raise ModelCIError(f"{where}: not a modelci gate verdict (schema {VERDICT_SCHEMA} expected); "
                           "run `modelci gate` for this model")
    meta = verify_model(model_dir)
    sha = meta.get("sha256")
    if not isinstance(verdict.get("sha256"), str) or verdict["sha256"] != sha:
        raise ModelCIError(f"{where}: sha256: verdict is for model {str(verdict.get('sha256'))[:12]}…, "
                           f"not for {model_dir} ({str(sha)[:12]}…); gate this exact model before deploying")
    if verdict.get("dry_run") is not False:
        raise ModelCIError(f"{where}: dry_run: a dry-run gate verdict never authorises a deploy; "
                           "set gate.dry_run: false and run the gate again")
    if verdict.get("passed") is not True or verdict.get("verdict") not in (PROMOTE, NO_CHANGE):
        raise ModelCIError(f"{where}: verdict: {verdict.get('verdict')} (passed="
                           f"{verdict.get('passed')}) does not allow deploying this model; "
                           "see the gate job's summary for the failed checks")
    return verdict


# --------------------------------------------------------------------------------------------------
# Evidence: verdict.json, junit.xml, metrics.txt, summary.md, gate.png
# --------------------------------------------------------------------------------------------------
VERDICT_ICON = {PROMOTE: "✅", REJECT: "❌", NO_CHANGE: "➖"}


def public_result(result: dict[str, Any]) -> dict[str, Any]:
    """The result without private helpers (what verdict.json holds)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


def junit_xml(verdict: dict[str, Any]) -> str:
    """One testcase per gate check; failed checks are <failure>, skipped ones <skipped>."""
    import xml.etree.ElementTree as ET

    checks = verdict["checks"]
    failures = sum(1 for c in checks if not c["passed"])
    skipped = sum(1 for c in checks if c.get("skipped"))
    name = f"modelci gate ({verdict.get('model', {}).get('name') or 'model'})"
    suites = ET.Element("testsuites", name="modelci-gate", tests=str(len(checks)),
                        failures=str(failures), errors="0")
    suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(checks)), failures=str(failures),
                          errors="0", skipped=str(skipped))
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname=f"modelci.gate.{check['kind']}",
                             name=check["name"], time="0")
        if check.get("skipped"):
            ET.SubElement(case, "skipped", message=check["message"])
        elif not check["passed"]:
            fail = ET.SubElement(case, "failure", message=check["message"], type=check["kind"])
            fail.text = check["message"] + (" (dry run: reported, not blocking)" if verdict.get("dry_run")
                                            else "")
        else:
            ET.SubElement(case, "system-out").text = check["message"]
    props = ET.SubElement(suite, "properties")
    for key in ("verdict", "passed", "dry_run", "sha256"):
        ET.SubElement(props, "property", name=key, value=str(verdict.get(key)))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _metric_name(*parts: str) -> str:
    import re

    name = "_".join(p for p in parts if p)
    name = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return name if re.match(r"[a-zA-Z_]", name) else f"_{name}"


def metrics_text(verdict: dict[str, Any]) -> str:
    """GitLab `metrics` report (OpenMetrics text): `name value` lines, then `# EOF`."""
    lines: list[str] = []

    def add(name: str, value: Any) -> None:
        if value is None or isinstance(value, str):
            return
        value = float(value)
        if math.isfinite(value):
            lines.append(f"{name} {value:.6g}")

    for who in ("candidate", "champion"):
        for metric, value in sorted((verdict["metrics"].get(who) or {}).items()):
            add(_metric_name("modelci", who, metric), value)
    for label, row in sorted((verdict.get("per_class", {}).get("candidate") or {}).items()):
        for metric in PER_CLASS_METRICS:
            add(_metric_name("modelci_candidate", metric, "class", label), row.get(metric))
    p = verdict["primary"]
    for key in ("improvement", "lo", "hi"):
        add(_metric_name("modelci_gate", p["metric"], key), p.get(key))
    add("modelci_gate_passed", 1 if verdict["passed"] else 0)
    add("modelci_gate_would_pass", 1 if verdict.get("would_pass") else 0)
    add("modelci_gate_dry_run", 1 if verdict["dry_run"] else 0)
    for v in (PROMOTE, REJECT, NO_CHANGE):
        add(_metric_name("modelci_gate_verdict", v.lower()), 1 if verdict["verdict"] == v else 0)
    return "\n".join(lines) + "\n# EOF\n"


def summary_markdown(verdict: dict[str, Any], image: str | None = None) -> str:
    """Markdown for the job log, the MR note and summary.md."""
    model = verdict.get("model") or {}
    champ_info = verdict.get("champion") or {}
    p = verdict["primary"]
    icon = VERDICT_ICON.get(verdict["verdict"], "")
    title = f"{icon} **{verdict['verdict']}**"
    if verdict["dry_run"]:
        title += " — dry run: reported only, never counts as passing for a deploy"
    elif verdict["passed"]:
        title += " — passed, may be promoted"
    else:
        title += " — not promotable"
    out = [f"### modelci gate: {model.get('name') or 'model'} {model.get('version') or ''}".rstrip(), "",
           title, ""]
    cand_label = f"candidate `{str(verdict.get('sha256') or '')[:12]}`"
    champ_label = (" ".join(p for p in ("champion", champ_info.get("version"),
                                        f"`{str(verdict.get('champion_sha256'))[:12]}`") if p)
                   if verdict.get("champion_sha256") else "champion (none)")
    cm = verdict["metrics"].get("champion") or {}
    out += [f"| metric | {cand_label} | {champ_label} | Δ |", "|---|---:|---:|---:|"]
    cand_metrics = verdict["metrics"]["candidate"]
    for metric in verdict.get("display_metrics") or list(cand_metrics):
        value = cand_metrics[metric]
        other = cm.get(metric)
        delta = f"{value - other:+.4f}" if other is not None else ""
        star = " (primary)" if metric == p["metric"] else ""
        out.append(f"| {metric}{star} | {value:.4f} | {_fmt(other) if cm else '—'} | {delta} |")
    out.append("")
    if p.get("lo") is not None:
        direction = "higher is better" if p["higher_is_better"] else "lower is better, sign flipped"
        out.append(f"Primary metric **{p['metric']}** ({direction}): improvement {p['improvement']:+.4f}, "
                   f"{round(p['confidence'] * 100)}% paired-bootstrap interval [{p['lo']:+.4f}, {p['hi']:+.4f}] "
                   f"over {p['n_rows']} hold-out rows, {p['samples']} resamples, allowed regression "
                   f"{p['allowed_regression']:g} → {p['comparison']}.")
    else:
        out.append(f"Primary metric **{p['metric']}** = {p['candidate']:.4f}; no champion, thresholds only.")
    out += ["", "| check | result | detail |", "|---|---|---|"]
    for c in verdict["checks"]:
        status = "skipped" if c.get("skipped") else ("pass" if c["passed"] else "**FAIL**")
        out.append(f"| {c['name']} | {status} | {c['message'].replace('|', '/')} |")
    if image:
        out += ["", image]
    return "\n".join(out) + "\n"


def plot_png(result: dict[str, Any], path: str | os.PathLike[str], task: str,
             y_true: Any = None, candidate_pred: Any = None) -> str | None:
    """Confusion matrix (classification) or predicted-vs-actual (regression), metric bars, and the
    bootstrap distribution of the improvement. Returns the path, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from . import log

        log.warn("matplotlib is not installed; the gate plot is skipped (pip install matplotlib)")
        return None
    diffs = result.get("_diffs")
    ncols = 3 if diffs is not None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.4))
    ax = axes[0]
    cmx = result.get("confusion_matrix") or {}
    if task == "classification" and cmx.get("candidate") is not None:
        cm = np.asarray(cmx["candidate"], dtype=float)
        labels = [str(v) for v in cmx["labels"]]
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                        color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title("candidate confusion matrix")
    elif y_true is not None and candidate_pred is not None:
        y = np.asarray(y_true, dtype=float)
        pr = np.asarray(candidate_pred, dtype=float)
        ax.scatter(y, pr, s=6, alpha=0.5)
        lo, hi = float(min(y.min(), pr.min())), float(max(y.max(), pr.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
        ax.set_xlabel("actual")
        ax.set_ylabel("predicted")
        ax.set_title("candidate: predicted vs actual")
    ax = axes[1]
    cand = result["metrics"]["candidate"]
    champ = result["metrics"].get("champion") or {}
    names = [n for n in (result.get("display_metrics") or list(cand)) if n in cand]
    x = np.arange(len(names))
    width = 0.4 if champ else 0.8
    ax.bar(x - (width / 2 if champ else 0), [cand[n] for n in names], width, label="candidate")
    if champ:
        ax.bar(x + width / 2, [champ.get(n, np.nan) for n in names], width, label="champion")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_title("metrics on the same hold-out rows")
    ax.set_ylim(0, max(1.0, *(cand[n] for n in names)) * 1.15)
    ax.legend(loc="upper center", ncols=2, fontsize=8, frameon=False)
    if diffs is not None:
        ax = axes[2]
        p = result["primary"]
        ax.hist(diffs, bins=40, color="tab:purple", alpha=0.7)
        ax.axvline(0, color="black", lw=1)
        ax.axvline(p["lo"], color="tab:red", ls="--", lw=1)
        ax.axvline(p["hi"], color="tab:red", ls="--", lw=1)
        if p.get("allowed_regression"):
            ax.axvline(-p["allowed_regression"], color="tab:orange", ls=":", lw=1)
        ax.set_title(f"bootstrap improvement on {p['metric']}: {p['comparison']}")
    fig.suptitle(f"modelci gate: {result['verdict']}" + (" (dry run)" if result["dry_run"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)
