"""The one evaluation path: score a model on hold-out rows.

Training scores the candidate it just fitted with `score`, and the gate scores candidate and
champion with the same code (`score_model`, which adds the artifact's input columns and the
candidate's class order), so the numbers in metrics.json and in the gate's table are the same
computation (docs/design.md#evaluation-set-and-champion).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import log, metrics
from ..errors import ModelCIError


@dataclass
class Scored:
    pred: Any                    # predictions, one per hold-out row
    proba: Any                   # class probabilities (columns in `classes` order) or None
    classes: list[Any] | None    # classification: the class order of `proba` and of the metrics
    metrics: dict[str, Any]      # modelci.metrics.compute document


def score(config: dict[str, Any], model: Any, X: Any, y: Any, *, y_train: Any = None,
          names: Sequence[str] | None = None) -> tuple[Any, Any, list[Any] | None, dict[str, Any]]:
    """(predictions, probabilities, classes, metrics document) of `model` on the rows X, y.
    `names` limits the scalar metrics (default: the config's `metrics:`, else the task's defaults)."""
    pred, proba, classes = predict(config, model, X, y if y_train is None else y_train)
    names = names or config.get("metrics") or list(metrics.DEFAULT_NAMES_BY_TASK[config["task"]])
    return pred, proba, classes, metrics.compute(config["task"], np.asarray(y), pred, proba, classes, names=names)


def predict(config: dict[str, Any], model: Any, X: Any, y_train: Any) -> tuple[Any, Any, list[Any] | None]:
    """(predictions, probabilities or None, classes or None): training's hold-out prediction."""
    from ..training import predict_holdout

    return predict_holdout(config, model, X, y_train)


class MissingInputs(ModelCIError):
    def __init__(self, who: str, missing: list[str]):
        super().__init__(f"gate: {who} model needs input column(s) {', '.join(missing)} that the hold-out "
                         "set does not have")
        self.who = who


def input_columns(meta: dict[str, Any]) -> list[str]:
    return [i["name"] for i in meta.get("inputs") or [] if isinstance(i, dict) and "name" in i]


def _aligned(estimator: Any, proba: Any, classes: list[Any] | None, who: str) -> Any:
    """Probability columns re-ordered to `classes` (the candidate's), or None if they cannot be."""
    from ..gate.stats import _key

    if proba is None or not classes:
        return None
    own = [_key(c) for c in getattr(estimator, "classes_", [])]
    want = [_key(c) for c in classes]
    if sorted(map(str, own)) != sorted(map(str, want)) or len(own) != np.shape(proba)[1]:
        log.warn(f"gate: the {who} model's classes {own} differ from the candidate's {want}; "
                 "its probabilities are not compared")
        return None
    index = {str(c): i for i, c in enumerate(own)}
    return np.asarray(proba)[:, [index[str(c)] for c in want]]


def score_model(config: dict[str, Any], estimator: Any, meta: dict[str, Any], X: Any, y: Any, who: str,
                classes: list[Any] | None) -> Scored:
    """Score a saved model (its model.json `inputs` select the columns) on the hold-out rows, with
    metrics in the candidate's class order `classes`. Any failure to predict is an error, never a pass."""
    cols = input_columns(meta)
    missing = [c for c in cols if c not in getattr(X, "columns", [])]
    if missing:
        raise MissingInputs(who, missing)
    frame = X[cols] if cols else X
    try:
        pred, proba, _ = predict(config, estimator, frame, y)
    except ModelCIError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to score the hold-out set is an error, not a pass
        raise ModelCIError(f"gate: {who} model failed to predict the hold-out rows "
                           f"({exc.__class__.__name__}: {str(exc)[:200]}); check the model and data") from None
    proba = _aligned(estimator, proba, classes, who)
    result = metrics.compute(config["task"], np.asarray(y), pred, proba, classes,
                             names=metrics.known_metrics(config["task"]))
    return Scored(pred=pred, proba=proba, classes=classes, metrics=result)
