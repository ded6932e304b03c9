"""Fitting and evaluating: `train(config, dataset)` splits the rows, builds (and optionally searches)
the model, fits it, scores it on the hold-out rows and collects what the model directory records."""
from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import log
from ..data import Dataset, split_dataset, xy
from ..errors import ModelCIError
from ..metrics import to_native
from .pipeline import build_model
from .search import run_search
from .stats import feature_stats, signature, smoke_sample, target_stats


@dataclass
class TrainResult:
    model: Any
    metrics: dict[str, Any]                       # compute() result on the hold-out set
    best_params: dict[str, Any] | None
    search: dict[str, Any] | None
    feature_stats: dict[str, Any]
    target_stats: dict[str, Any]
    inputs: list[dict[str, str]]
    outputs: list[dict[str, str]]
    classes: list[Any] | None
    smoke: dict[str, Any]
    rows: dict[str, int]
    seeded: list[str]
    durations: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- stdout
@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout (fd 1, also by C code and joblib workers) to stderr, so that
    stdout carries only the command's JSON result."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:
        saved = None
    if saved is not None:
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


# Classifiers whose predict() is by definition the class of highest predict_proba(): for these the
# hold-out predictions are taken from the probabilities instead of a second pass over the rows.
ARGMAX_CLASSIFIERS = ("LogisticRegression", "HistGradientBoostingClassifier", "RandomForestClassifier",
                      "ExtraTreesClassifier", "DecisionTreeClassifier", "ExtraTreeClassifier",
                      "GradientBoostingClassifier", "KNeighborsClassifier", "GaussianNB", "MultinomialNB",
                      "BernoulliNB", "ComplementNB", "CategoricalNB")
CONSISTENCY_SAMPLE = 256


def _final_estimator(model: Any) -> Any:
    while hasattr(model, "steps"):
        model = model.steps[-1][1]
    return model


def predict_holdout(config: dict[str, Any], model: Any, X: pd.DataFrame,
                    y_train: pd.Series) -> tuple[np.ndarray, Any, list[Any] | None]:
    """(predictions, probabilities or None, classes or None) on the hold-out rows."""
    if config["task"] != "classification":
        return model.predict(X), None, None
    classes_arr = getattr(model, "classes_", None)
    classes = to_native(list(classes_arr if classes_arr is not None else sorted(y_train.unique())))
    proba = None
    if hasattr(model, "predict_proba"):
        try:
            proba = model.predict_proba(X)
        except (AttributeError, NotImplementedError):
            proba = None
    if proba is not None and classes_arr is not None and \
            type(_final_estimator(model)).__name__ in ARGMAX_CLASSIFIERS:
        derived = np.asarray(classes_arr)[np.argmax(proba, axis=1)]
        head = X.iloc[:CONSISTENCY_SAMPLE]
        if np.array_equal(np.asarray(model.predict(head)), derived[:len(head)]):
            return derived, proba, classes
    return model.predict(X), proba, classes


# ---------------------------------------------------------------------------------------------- train
def _module_refs(model: Any, module_root: str) -> list[str]:
    refs = set()
    objs = [model] + list(model.get_params(deep=True).values())
    for obj in objs:
        for m in (getattr(type(obj), "__module__", ""), getattr(obj, "__module__", "")):
            if isinstance(m, str) and (m == module_root or m.startswith(module_root + ".")):
                refs.add(m)
    return sorted(refs)


def train(config: dict[str, Any], ds: Dataset) -> TrainResult:
    durations: dict[str, float] = {}
    warnings: list[str] = []
    src = config["_config_file"]

    t = time.perf_counter()
    with log.section("modelci_split", "Splitting train / hold-out"):
        train_df, hold_df, _ = split_dataset(config, ds)
        X, y = xy(config, train_df)
        Xh, yh = xy(config, hold_df)
        log.info(f"{len(X)} training rows, {len(Xh)} hold-out rows "
                 f"(fraction {config['holdout']['fraction']}, key: "
                 f"{'id column ' + repr(config['id_column']) if config['id_column'] else 'row content'})")
        if not config["id_column"]:
            log.info("no id_column: rows are assigned by their content; editing a row may move it between sets")
        if config["task"] == "classification":
            missing = sorted(set(map(str, y.unique())) - set(map(str, yh.unique())))
            if missing:
                msg = f"class(es) {', '.join(missing)} have no hold-out row; their metrics are not measured"
                log.warn(msg)
                warnings.append(msg)
        if (not config.get("entry_point") and config["preprocessing"]["numeric"]["impute"] == "none"):
            for col in config["features"]["numeric"]:
                if X[col].isna().any():
                    raise ModelCIError(f"{src}: preprocessing.numeric.impute: is none but column '{col}' has "
                                       f"{int(X[col].isna().sum())} missing value(s); set impute: median")
    durations["split"] = time.perf_counter() - t

    t = time.perf_counter()
    with log.section("modelci_fit", "Fitting the model"):
        model, seeded = build_model(config, X)
        if seeded:
            log.info(f"seeded {', '.join(seeded)} = {config['seed']}")
        search_info = None
        with stdout_to_stderr():
            if config.get("search"):
                model, search_info = run_search(config, model, X, y)
            else:
                try:
                    model.fit(X, y)
                except (ValueError, TypeError) as exc:
                    raise ModelCIError(f"{src}: fitting the model failed: {type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0]}; check the estimator, its params and the "
                                       "feature kinds") from None
        if config.get("entry_point"):
            mod_root = config["entry_point"].split(":")[0].split(".")[0]
            refs = _module_refs(model, mod_root)
            if refs:
                msg = (f"the fitted model references code from '{mod_root}' ({', '.join(refs)}); the serving "
                       "image must be able to import it")
                log.warn(msg)
                warnings.append(msg)
    durations["fit"] = time.perf_counter() - t

    t = time.perf_counter()
    from ..steps import evaluate as evaluate_step  # the one scoring path, shared with the gate
    with log.section("modelci_evaluate", "Evaluating on the hold-out set"):
        y_pred, proba, classes, result = evaluate_step.score(config, model, Xh, yh, y_train=y)
        for k, v in result["metrics"].items():
            log.info(f"{k:>18}: {v if v is None else round(v, 4)}")
    durations["evaluate"] = time.perf_counter() - t

    t = time.perf_counter()
    fstats = feature_stats(config, X)
    tstats = target_stats(config, y)
    inputs, outputs = signature(config, X, classes)
    smoke, w = smoke_sample(model, Xh)
    warnings += w
    durations["stats"] = time.perf_counter() - t
    return TrainResult(model=model, metrics=result, best_params=search_info["best_params"] if search_info else None,
                       search=search_info, feature_stats=fstats, target_stats=tstats, inputs=inputs, outputs=outputs,
                       classes=classes, smoke=smoke, rows={"total": len(ds.frame), "train": len(X), "holdout": len(Xh)},
                       seeded=seeded, durations=durations, warnings=warnings)
