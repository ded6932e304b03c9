"""Cross-validated hyperparameter search (config `search:`): GridSearchCV / RandomizedSearchCV over
the built pipeline, with the search space's names checked against the model's parameters."""
from __future__ import annotations

import difflib
import json
from typing import Any

import numpy as np
import pandas as pd

from .. import log
from ..errors import ModelCIError
from ..metrics import SKLEARN_SCORERS, to_native


def _space(config: dict[str, Any], model: Any) -> dict[str, Any]:
    from scipy import stats

    valid = set(model.get_params(deep=True))
    space: dict[str, Any] = {}
    for name, values in config["search"]["params"].items():
        full = name if ("__" in name or config.get("entry_point")) else f"estimator__{name}"
        if full not in valid:
            near = difflib.get_close_matches(full, sorted(valid), n=3)
            hint = f"; close: {', '.join(near)}" if near else ""
            raise ModelCIError(f"{config['_config_file']}: search.params.{name}: the model has no parameter "
                               f"'{full}'{hint}; estimator parameters are written without prefix (C), "
                               "preprocessing ones as preprocess__<step>__<param>")
        if isinstance(values, dict):
            dist, (lo, hi) = next(iter(values.items()))
            if dist == "loguniform":
                values = stats.loguniform(lo, hi)
            elif dist == "uniform":
                values = stats.uniform(lo, hi - lo)
            else:
                values = stats.randint(int(lo), int(hi) + 1)
        elif any(isinstance(v, list) for v in values):
            values = [tuple(v) if isinstance(v, list) else v for v in values]  # e.g. ngram_range
        space[full] = values
    return space


def scoring_name(config: dict[str, Any]) -> str:
    s = config["search"]["scoring"] if config.get("search") else None
    if s is None:
        s = config["gate"].get("primary_metric") or ("accuracy" if config["task"] == "classification" else "r2")
    return SKLEARN_SCORERS.get(s, s)


def run_search(config: dict[str, Any], model: Any, X: pd.DataFrame, y: pd.Series) -> tuple[Any, dict[str, Any]]:
    from sklearn.model_selection import (
        GridSearchCV,
        KFold,
        ParameterGrid,
        RandomizedSearchCV,
        StratifiedKFold,
    )

    sc = config["search"]
    seed = config["seed"]
    space = _space(config, model)
    cv = (StratifiedKFold(n_splits=sc["cv"], shuffle=True, random_state=seed) if config["task"] == "classification"
          else KFold(n_splits=sc["cv"], shuffle=True, random_state=seed))
    scoring = scoring_name(config)
    if sc["method"] == "grid":
        n_candidates = len(ParameterGrid(space))
        search = GridSearchCV(model, space, cv=cv, scoring=scoring, n_jobs=sc["n_jobs"], refit=True,
                              error_score="raise", verbose=0)
    else:
        n_candidates = sc["n_iter"]
        search = RandomizedSearchCV(model, space, n_iter=sc["n_iter"], cv=cv, scoring=scoring, n_jobs=sc["n_jobs"],
                                    refit=True, random_state=seed, error_score="raise", verbose=0)
    total = n_candidates * sc["cv"]
    search.verbose = 2 if total <= 200 else 1
    log.info(f"{sc['method']} search: {n_candidates} candidate(s) x {sc['cv']} folds = {total} fits, "
             f"scoring {scoring}")
    try:
        search.fit(X, y)
    except ValueError as exc:
        raise ModelCIError(f"{config['_config_file']}: search: fitting failed: {str(exc).splitlines()[0]}; check "
                           "search.params values") from None
    res = search.cv_results_
    order = np.argsort(res["rank_test_score"])[:10]
    top = [{"params": to_native({k: _jsonable(v) for k, v in res["params"][i].items()}),
            "mean_score": float(res["mean_test_score"][i]), "std_score": float(res["std_test_score"][i]),
            "rank": int(res["rank_test_score"][i])} for i in order]
    best = to_native({k: _jsonable(v) for k, v in search.best_params_.items()})
    log.info(f"best params {json.dumps(best, sort_keys=True)}; cv {scoring} "
             f"{search.best_score_:.4f} ± {float(res['std_test_score'][search.best_index_]):.4f}")
    info = {"method": sc["method"], "scoring": scoring, "cv": sc["cv"], "candidates": n_candidates, "fits": total,
            "best_params": best, "best_score": float(search.best_score_), "top": top}
    return search.best_estimator_, info


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, (str, int, float, bool)) or v is None or isinstance(v, np.generic):
        return v
    return repr(v)
