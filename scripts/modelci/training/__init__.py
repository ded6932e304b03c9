"""Building, tuning, fitting and evaluating the model described by a config.

The saved model is ONE scikit-learn Pipeline that takes a DataFrame of raw input columns:

    Pipeline([("preprocess", ColumnTransformer([...by column name...])), ("estimator", <estimator>)])

  numeric      SimpleImputer (preprocessing.numeric.impute) -> scaler (preprocessing.numeric.scale)
  categorical  SimpleImputer -> OneHotEncoder(handle_unknown="ignore" by default)
  text         one TfidfVectorizer per text feature (lowercase, strip_accents, token_pattern, stop
               words...): "textN" = Pipeline([fill, (join,) tfidf]); a plain column is selected as a 1-D
               Series, a combined feature {name, columns} as a frame whose rows are joined with a space;
               missing values become "" (DataFrame/Series.to_numpy(na_value=""))

A model whose only feature is one combined text feature has Pipeline([("text0", ...)]) as its
"preprocess" step instead of a ColumnTransformer (whose per-call cost would dominate a 1-row predict).
Every piece is stock scikit-learn, or a FunctionTransformer of stdlib/pandas callables
(operator.methodcaller, functools.partial(map, " ".join)), so a pickled model loads with only
scikit-learn, pandas and numpy installed.

or, with `entry_point: "module:function"`, whatever unfitted estimator/pipeline that function returns
(it receives the same raw DataFrame). Only scikit-learn/numpy objects end up in the pickled model, so
the serving image needs no modelci code (an entry point's own functions would be needed there too:
a warning says so).

`train(config, dataset)` returns a TrainResult with the fitted model, hold-out metrics, best params,
feature statistics, the smoke-test sample and timings; `commands/train.py` writes them to disk.

Modules: `pipeline` (building the model), `search` (hyperparameter search), `fit` (fitting and
evaluating: `train`), `stats` (feature statistics, signature, smoke sample).
"""
from __future__ import annotations

from .fit import (
    ARGMAX_CLASSIFIERS,
    CONSISTENCY_SAMPLE,
    TrainResult,
    predict_holdout,
    stdout_to_stderr,
    train,
)
from .pipeline import (
    build_model,
    build_preprocessor,
    entry_point_file,
    load_entry_point,
    stop_words,
    text_pipeline,
)
from .search import run_search, scoring_name
from .stats import (
    QUANTILES,
    SMOKE_ROWS,
    TOP_CATEGORIES,
    feature_stats,
    records,
    signature,
    smoke_sample,
    target_stats,
)

__all__ = [
    "ARGMAX_CLASSIFIERS", "CONSISTENCY_SAMPLE", "QUANTILES", "SMOKE_ROWS", "TOP_CATEGORIES", "TrainResult",
    "build_model", "build_preprocessor", "entry_point_file", "feature_stats", "load_entry_point",
    "predict_holdout", "records", "run_search", "scoring_name", "signature", "smoke_sample", "stdout_to_stderr",
    "stop_words", "target_stats", "text_pipeline", "train",
]
