"""The gate's decision: may this candidate model replace the champion? (docs/gate.md)

  result = evaluate(policy, task, y_true, candidate_pred, champion_pred_or_None, classes=[...],
                    expectation_checks=[...], slices=[...])

Decision order on the primary metric, with d = candidate - champion expressed as an improvement
(sign flipped for lower-is-better metrics) and its paired-bootstrap interval [lo, hi]:

  REJECT        if any threshold, per-class minimum, expectation or slice limit fails,
                or hi < -allowed_regression, or d < -allowed_regression
  PROMOTE       else if lo > 0
  INCONCLUSIVE  else if hi - lo > max_interval_width, or the hold-out has < min_holdout_rows rows
  NO_CHANGE     otherwise

NO_CHANGE passes when gate.promote_no_change is true, INCONCLUSIVE when gate.promote_inconclusive is
true. Without a champion (first model) only thresholds, per-class minimums and expectations apply.

Dry run: the verdict is computed and reported the same way but never authorises a deploy:
verdict.json has "dry_run": true and "passed": false, "would_pass" records the outcome, the command
exits 0, and `require_passing_verdict` refuses any dry-run verdict.
This module does no file I/O except `require_passing_verdict`, which reads a verdict and re-hashes a model.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import metrics as registry
from ..errors import EXIT_GATE_NO_CHANGE, EXIT_GATE_REJECTED, EXIT_OK, ModelCIError
from .stats import as_array, paired_bootstrap, point_metrics, roc_auc, rows_needed

VERDICT_SCHEMA = "modelci.gate.verdict/1"
PROMOTE, REJECT, NO_CHANGE, INCONCLUSIVE = "PROMOTE", "REJECT", "NO_CHANGE", "INCONCLUSIVE"
VERDICTS = (PROMOTE, NO_CHANGE, INCONCLUSIVE, REJECT)


def decide(lo: float, hi: float, allowed_regression: float, *, improvement: float | None = None,
           max_interval_width: float | None = None, n_rows: int | None = None,
           min_holdout_rows: int = 1) -> str:
    """The comparison with the champion (docs/gate.md, "Decision order")."""
    if hi < -allowed_regression or (improvement is not None and improvement < -allowed_regression):
        return REJECT
    if lo > 0:
        return PROMOTE
    if (max_interval_width is not None and hi - lo > max_interval_width) or \
            (n_rows is not None and n_rows < min_holdout_rows):
        return INCONCLUSIVE
    return NO_CHANGE


def _merge_metrics(scored: dict[str, float], own: dict[str, Any] | None) -> dict[str, float]:
    """The metrics of the one evaluation path (`scored`, e.g. modelci.metrics.compute) completed with
    the gate's vectorised ones (same values, tests/test_gate.py checks it)."""
    merged = {k: float(v) for k, v in (own or {}).items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for name, value in scored.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            merged[name] = float(value)
    return merged


def _threshold_checks(policy: dict[str, Any], metrics: dict[str, float], task: str) -> list[dict[str, Any]]:
    checks = []
    for metric, spec in policy["thresholds"].items():
        if metric not in metrics:
            raise ModelCIError(f"gate.thresholds.{metric}: metric was not computed for this {task} "
                               f"model; available: {', '.join(sorted(metrics))}")
        value = metrics[metric]
        for bound, limit in spec.items():
            ok = value >= limit if bound == "min" else value <= limit
            op = ">=" if bound == "min" else "<="
            checks.append({
                "name": f"threshold {metric} {op} {limit:g}", "kind": "threshold", "metric": metric,
                "bound": bound, "limit": limit, "value": value, "passed": bool(ok),
                "message": f"{metric} = {value:.4f} {'meets' if ok else 'fails'} {bound} {limit:g}",
            })
    return checks


def _per_class_checks(policy: dict[str, Any], per_class: dict[str, Any], wanted: list[str]) -> list[dict[str, Any]]:
    checks = []
    for metric, limit in policy["per_class_min"].items():
        for label in wanted:
            row = per_class.get(label, {"support": 0.0})
            name = f"per-class {metric}[{label}] >= {limit:g}"
            if not row.get("support"):
                checks.append({"name": name, "kind": "per_class", "metric": metric, "class": label, "limit": limit,
                               "value": None, "passed": False,
                               "message": f"class {label!r} has no hold-out rows, so its {metric} cannot be "
                                          "verified; add rows of this class to the data"})
                continue
            value = row[metric]
            ok = value >= limit
            checks.append({"name": name, "kind": "per_class", "metric": metric, "class": label, "limit": limit,
                           "value": value, "passed": bool(ok),
                           "message": f"{metric} of class {label!r} = {value:.4f} "
                                      f"{'meets' if ok else 'is below'} {limit:g}"})
    return checks


def _slice_results(policy: dict[str, Any], task: str, y: np.ndarray, cand: Any, champ: Any,
                   slices: Sequence[dict[str, Any]], classes: Sequence[Any] | None,
                   cand_proba: Any, champ_proba: Any) -> list[dict[str, Any]]:
    """The primary metric per slice for candidate and champion on the same rows (with intervals)."""
    metric, boot = policy["primary_metric"], policy["bootstrap"]
    cand, champ = np.asarray(cand), None if champ is None else np.asarray(champ)
    out = []
    for sl in slices:
        labels = np.asarray(sl["labels"], dtype=object)
        for value in sl["order"]:
            rows = np.flatnonzero(labels == value)
            entry: dict[str, Any] = {"column": sl["column"], "slice": value, "n_rows": int(len(rows)),
                                     "candidate": None, "champion": None, "improvement": None,
                                     "lo": None, "hi": None}
            sub: dict[str, Any] = {"candidate_proba": None if cand_proba is None else np.asarray(cand_proba)[rows],
                   "champion_proba": None if champ_proba is None else np.asarray(champ_proba)[rows]}
            try:
                if champ is not None and len(rows) >= 2:
                    res = paired_bootstrap(task, metric, y[rows], cand[rows], champ[rows], classes=classes,
                                           samples=boot["samples"], confidence=boot["confidence"],
                                           seed=boot["seed"], strict=False,
                                           max_dropped_share=policy["max_dropped_share"], **sub)
                    entry.update({k: res[k] for k in ("candidate", "champion", "improvement", "lo", "hi")})
                    entry["problem"] = res.get("problem")
                elif len(rows):
                    if registry.REGISTRY[metric].needs_proba:
                        entry["candidate"] = roc_auc(y[rows], sub["candidate_proba"], classes or [])
                    else:
                        entry["candidate"] = point_metrics(task, y[rows], cand[rows], classes)["metrics"][metric]
            except ModelCIError as exc:  # e.g. roc_auc without both classes in a slice: shown, not gated
                entry["problem"] = str(exc)
            out.append(entry)
    return out


def _limit_checks(policy: dict[str, Any], slices: list[dict[str, Any]], per_class: list[dict[str, Any]],
                  metric: str, per_class_metric: str | None) -> list[dict[str, Any]]:
    """max_slice_regression: a slice or class whose point improvement is below -limit is a REJECT."""
    limit = policy["max_slice_regression"]
    if limit is None:
        return []
    def check(name: str, kind: str, m: str | None, d: float, where: str, change: str) -> dict[str, Any]:
        ok = d >= -limit
        return {"name": name, "kind": kind, "metric": m, "value": d, "passed": bool(ok), "limit": limit,
                "message": f"{where}: {change} {d:+.4f} {'within' if ok else 'beyond'} max_slice_regression "
                           f"{limit:g}"}

    checks = [check(f"slice {s['column']}={s['slice']} {metric}", "slice", metric, s["improvement"],
                    f"{metric} on slice {s['column']}={s['slice']} ({s['n_rows']} rows)", "improvement")
              for s in slices if s.get("improvement") is not None]
    checks += [check(f"class {c['class']} {per_class_metric}", "class", per_class_metric, c["delta"],
                     f"{per_class_metric} of class {c['class']!r}", "Δ")
               for c in per_class if c.get("delta") is not None]
    return checks


def _comparison_check(policy: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    metric, allowed = res["metric"], policy["allowed_regression"]
    comparison = decide(res["lo"], res["hi"], allowed, improvement=res["improvement"],
                        max_interval_width=policy["max_interval_width"], n_rows=res["n_rows"],
                        min_holdout_rows=policy["min_holdout_rows"])
    width = res["hi"] - res["lo"]
    res.update({"comparison": comparison, "allowed_regression": allowed, "interval_width": width,
                "max_interval_width": policy["max_interval_width"], "min_holdout_rows": policy["min_holdout_rows"]})
    interval = (f"improvement {res['improvement']:+.4f}, {int(res['confidence'] * 100)}% interval "
                f"[{res['lo']:+.4f}, {res['hi']:+.4f}]")
    if comparison == PROMOTE:
        ok, msg = True, f"candidate is better on {metric}: {interval}, lower bound > 0"
    elif comparison == REJECT and res["hi"] < -allowed:
        ok, msg = False, f"candidate is worse on {metric}: {interval}, upper bound < -{allowed:g} (allowed regression)"
    elif comparison == REJECT:
        ok, msg = False, (f"candidate is worse on {metric}: {interval}, point estimate below -{allowed:g} "
                          "(allowed regression)")
    elif comparison == INCONCLUSIVE:
        ok = policy["promote_inconclusive"]
        need = max(policy["min_holdout_rows"], rows_needed(res["n_rows"], width, policy["max_interval_width"])
                   if policy["max_interval_width"] else 0)
        res["rows_needed"] = need
        why = (f"the interval is {width:.4f} wide (max_interval_width {policy['max_interval_width']:g})"
               if policy["max_interval_width"] is not None and width > policy["max_interval_width"]
               else f"{res['n_rows']} hold-out rows < min_holdout_rows {policy['min_holdout_rows']}")
        msg = (f"the hold-out set cannot resolve {metric}: {interval}; {why}. About {need} hold-out rows "
               f"would make it decidable; promote_inconclusive is {str(ok).lower()}")
    else:
        ok = policy["promote_no_change"]
        msg = (f"no meaningful difference on {metric}: {interval} contains 0 or lies within the "
               f"allowed regression; promote_no_change is {str(ok).lower()}")
    if res.get("dropped"):
        msg += f" ({res['dropped']} of {res['samples']} resamples dropped: metric undefined)"
    return {"name": f"champion comparison on {metric}", "kind": "champion", "metric": metric,
            "passed": bool(ok), "value": res["improvement"], "message": msg, "comparison": comparison}


def evaluate(policy: dict[str, Any], task: str, y_true: Any, candidate_pred: Any,
             champion_pred: Any | None = None, *, classes: Sequence[Any] | None = None,
             candidate_extra: dict[str, Any] | None = None,
             champion_extra: dict[str, Any] | None = None,
             display: Sequence[str] | None = None, candidate_proba: Any = None,
             champion_proba: Any = None, expectation_checks: Sequence[dict[str, Any]] = (),
             slices: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Apply the policy. `*_extra` are the metrics of the one evaluation path (steps/evaluate.py);
    `expectation_checks` come from behaviour.run_expectations, `slices` are {column, labels, order}
    from behaviour.slice_labels. `display` orders the metrics shown to people. Returns the verdict
    document without model identity (the step adds sha256 etc.)."""
    metric = policy["primary_metric"]
    proba_metric = registry.REGISTRY[metric].needs_proba
    cand = point_metrics(task, y_true, candidate_pred, classes)
    if candidate_proba is not None and classes and proba_metric:
        cand["metrics"]["roc_auc"] = roc_auc(y_true, candidate_proba, classes)
    cand_metrics = _merge_metrics(candidate_extra or {}, cand["metrics"])
    champ = None
    champ_metrics: dict[str, float] | None = None
    if champion_pred is not None:
        champ = point_metrics(task, y_true, champion_pred, classes)
        if champion_proba is not None and classes and proba_metric:
            champ["metrics"]["roc_auc"] = roc_auc(y_true, champion_proba, classes)
        champ_metrics = _merge_metrics(champion_extra or {}, champ["metrics"])

    for name, value in cand_metrics.items():
        if not math.isfinite(value) and (name in policy["thresholds"] or name == metric):
            raise ModelCIError(f"gate: candidate metric {name} is {value}; cannot gate on it, "
                               "check the hold-out data and the model's predictions")

    checks = _threshold_checks(policy, cand_metrics, task)
    y = as_array(y_true, "hold-out target", task)
    if policy["per_class_min"]:
        wanted = [str(c) for c in (classes or [])] or [str(v) for v in np.unique(y)]
        checks += _per_class_checks(policy, cand["per_class"], wanted)
    checks += list(expectation_checks)
    if metric not in cand_metrics:
        raise ModelCIError(f"gate.primary_metric: {metric} was not computed; "
                           f"available: {', '.join(sorted(cand_metrics))}")
    per_class_metric = registry.REGISTRY[metric].per_class if task == "classification" else None
    diffs = None
    per_class_deltas: list[dict[str, Any]] = []
    metric_deltas: list[dict[str, Any]] = []
    if champion_pred is None:
        primary: dict[str, Any] = {"metric": metric, "higher_is_better": registry.REGISTRY[metric].higher_is_better,
                                   "candidate": cand_metrics[metric], "champion": None, "diff": None,
                                   "improvement": None, "lo": None, "hi": None, "comparison": None}
        checks.append({"name": f"champion comparison on {metric}", "kind": "champion", "metric": metric,
                       "passed": True, "skipped": True, "value": None,
                       "message": "no champion (first model): thresholds and expectations only"})
        comparison = PROMOTE
    else:
        boot = policy["bootstrap"]
        common = {"samples": boot["samples"], "confidence": boot["confidence"], "seed": boot["seed"],
                  "classes": classes, "max_dropped_share": policy["max_dropped_share"]}
        shown = [m for m in (display or cand_metrics) if champ_metrics and m in champ_metrics]
        primary = paired_bootstrap(task, metric, y, candidate_pred, champion_pred, candidate_proba=candidate_proba,
                                   champion_proba=champion_proba, per_class=None if proba_metric else per_class_metric,
                                   also=shown, **common)
        diffs = primary.pop("diffs")
        if proba_metric:  # per-class deltas and the other metrics come from the predictions
            extra = paired_bootstrap(task, "accuracy", y, candidate_pred, champion_pred, strict=False,
                                     per_class=per_class_metric, also=[*shown, "accuracy"], **common)
            per_class_deltas = extra.get("per_class", [])
            metric_deltas = [r for r in extra["others"] if r["metric"] != metric]
            if "accuracy" in shown:
                metric_deltas.insert(0, {"metric": "accuracy", "improvement": extra["improvement"],
                                         "lo": extra["lo"], "hi": extra["hi"]})
        else:
            per_class_deltas = primary.pop("per_class", [])
            metric_deltas = primary.pop("others", [])
        checks.append(_comparison_check(policy, primary))
        comparison = primary["comparison"]
    slice_rows = _slice_results(policy, task, y, candidate_pred, champion_pred, slices, classes,
                                candidate_proba, champion_proba) if slices else []
    checks += _limit_checks(policy, slice_rows, per_class_deltas, metric, per_class_metric)

    absolute_ok = all(c["passed"] for c in checks if c["kind"] != "champion")
    verdict = comparison if absolute_ok else REJECT
    would_pass = verdict == PROMOTE or (verdict == NO_CHANGE and policy["promote_no_change"]) or \
        (verdict == INCONCLUSIVE and policy["promote_inconclusive"])
    dry_run = bool(policy["dry_run"])
    shown = [m for m in [metric, *(display or cand_metrics), *policy["thresholds"]] if m in cand_metrics]
    return {
        "verdict": verdict,
        "passed": bool(would_pass and not dry_run),
        "would_pass": bool(would_pass),
        "dry_run": dry_run,
        "checks": checks,
        "primary": primary,
        "reasons": [c["message"] for c in checks if not c["passed"]],
        "metrics": {"candidate": cand_metrics, "champion": champ_metrics},
        "display_metrics": list(dict.fromkeys(shown)),
        "per_class": {"candidate": cand.get("per_class"), "champion": (champ or {}).get("per_class")},
        "per_class_deltas": {"metric": per_class_metric, "classes": per_class_deltas},
        "metric_deltas": metric_deltas,
        "slices": slice_rows,
        "confusion_matrix": {"labels": cand.get("labels"), "candidate": cand.get("confusion_matrix"),
                             "champion": (champ or {}).get("confusion_matrix")},
        "policy": policy,
        "_diffs": diffs,  # bootstrap samples for the plot; stripped before writing
    }


def exit_code(result: dict[str, Any]) -> int:
    """0 passed (or any dry run: it reports, it does not block), 2 REJECT, 3 NO_CHANGE or
    INCONCLUSIVE that the policy does not promote."""
    if result["dry_run"] or result["passed"]:
        return EXIT_OK
    return EXIT_GATE_REJECTED if result["verdict"] == REJECT else EXIT_GATE_NO_CHANGE


def require_passing_verdict(verdict_path: str | os.PathLike[str], model_dir: str | os.PathLike[str]
                            ) -> dict[str, Any]:
    """Refuse (ModelCIError) unless verdict_path is a passing, non-dry-run verdict for exactly the
    model in model_dir (whose model.joblib is re-hashed here). Returns the verdict."""
    from ..artifact import read_json, verify_model

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
    if verdict.get("passed") is not True or verdict.get("verdict") not in (PROMOTE, NO_CHANGE, INCONCLUSIVE):
        raise ModelCIError(f"{where}: verdict: {verdict.get('verdict')} (passed="
                           f"{verdict.get('passed')}) does not allow deploying this model; "
                           "see the gate job's summary for the failed checks")
    return verdict
