"""Building, tuning, fitting and evaluating the model described by a config.

The saved model is ONE scikit-learn Pipeline that takes a DataFrame of raw input columns:

    Pipeline([("preprocess", ColumnTransformer([...by column name...])), ("estimator", <estimator>)])

  numeric      SimpleImputer (preprocessing.numeric.impute) -> scaler (preprocessing.numeric.scale)
  categorical  SimpleImputer -> OneHotEncoder(handle_unknown="ignore" by default)
  text         one TfidfVectorizer per column (lowercase, strip_accents, token_pattern, stop words...),
               after filling missing values with ""

or, with `entry_point: "module:function"`, whatever unfitted estimator/pipeline that function returns
(it receives the same raw DataFrame). Only scikit-learn/numpy objects end up in the pickled model, so
the serving image needs no modelci code (an entry point's own functions would be needed there too:
a warning says so).

`train(config, dataset)` returns a TrainResult with the fitted model, hold-out metrics, best params,
feature statistics, the smoke-test sample and timings; `commands/train.py` writes them to disk.
"""
from __future__ import annotations

import contextlib
import copy
import difflib
import importlib
import importlib.util
import inspect
import json
import os
import sys
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import log
from .config import display_path, import_object
from .data import Dataset, feature_columns, split_dataset, xy
from .errors import ModelCIError
from .metrics import SKLEARN_SCORERS, to_native

SMOKE_ROWS = 20


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


# ---------------------------------------------------------------------------------------------- build
def _strip(word: str, mode: str | None) -> str:
    if mode is None:
        return word
    nfkd = unicodedata.normalize("NFKD", word)
    if mode == "ascii":
        return nfkd.encode("ascii", "ignore").decode("ascii")
    return "".join(c for c in nfkd if not unicodedata.combining(c))


def stop_words(config: dict[str, Any]) -> list[str] | str | None:
    """The stop words as TfidfVectorizer gets them: preprocessed like the documents (lowercase,
    accents stripped) so that they still match after preprocessing."""
    opt = config["preprocessing"]["text"]
    sw = opt["stop_words"]
    if sw is None or sw == "english":
        return sw
    if isinstance(sw, str):
        path = Path(config["_base_dir"]) / sw
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise ModelCIError(f"{display_path(path)}: stop-word file is not valid UTF-8; save it as UTF-8") from None
        words = [w.split("#", 1)[0].strip() for w in lines]
    else:
        words = list(sw)
    out = []
    for w in words:
        if not w:
            continue
        w = w.lower() if opt["lowercase"] else w
        out.append(_strip(w, opt["strip_accents"]))
    return sorted(set(out))


def _is_number_column(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def build_preprocessor(config: dict[str, Any], X: pd.DataFrame | None = None) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        MaxAbsScaler,
        MinMaxScaler,
        OneHotEncoder,
        RobustScaler,
        StandardScaler,
    )

    feats = config["features"]
    pre = config["preprocessing"]
    transformers: list[tuple[str, Any, Any]] = []
    if feats["numeric"]:
        opt = pre["numeric"]
        steps: list[tuple[str, Any]] = []
        if opt["impute"] != "none":
            kw: dict[str, Any] = {"strategy": opt["impute"], "add_indicator": opt["add_indicator"]}
            if opt["impute"] == "constant":
                kw["fill_value"] = opt["fill_value"]
            steps.append(("impute", SimpleImputer(**kw)))
        scaler = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler,
                  "maxabs": MaxAbsScaler}.get(opt["scale"])
        if scaler is not None:
            steps.append(("scale", scaler()))
        transformers.append(("numeric", Pipeline(steps) if steps else "passthrough", list(feats["numeric"])))
    if feats["categorical"]:
        opt = pre["categorical"]
        # columns of numbers (e.g. codes) keep their numeric values, so that serving inputs sent as JSON
        # numbers match; a string fill value cannot go into them, so they use the most frequent value
        numeric_cats = [c for c in feats["categorical"] if X is not None and _is_number_column(X[c])]
        groups = [("categorical", [c for c in feats["categorical"] if c not in numeric_cats], opt["impute"]),
                  ("categorical_codes", numeric_cats,
                   "most_frequent" if opt["impute"] == "constant" else opt["impute"])]
        for name, cols, impute in groups:
            if not cols:
                continue
            steps = []
            if impute != "none":
                kw = {"strategy": impute}
                if impute == "constant":
                    kw["fill_value"] = opt["fill_value"]
                steps.append(("impute", SimpleImputer(**kw)))
            steps.append(("onehot", OneHotEncoder(handle_unknown=opt["handle_unknown"],
                                                  min_frequency=opt["min_frequency"],
                                                  max_categories=opt["max_categories"], drop=opt["drop"])))
            transformers.append((name, Pipeline(steps), cols))
    if feats["text"]:
        opt = pre["text"]
        sw = stop_words(config)
        for i, col in enumerate(feats["text"]):
            vec = TfidfVectorizer(lowercase=opt["lowercase"], strip_accents=opt["strip_accents"],
                                  token_pattern=opt["token_pattern"], stop_words=sw,
                                  ngram_range=tuple(opt["ngram_range"]), analyzer=opt["analyzer"],
                                  min_df=opt["min_df"], max_df=opt["max_df"], max_features=opt["max_features"],
                                  sublinear_tf=opt["sublinear_tf"], binary=opt["binary"], dtype=np.float64)
            steps = [("fill", SimpleImputer(strategy="constant", fill_value="")),
                     ("flatten", FunctionTransformer(np.ravel)), ("tfidf", vec)]
            transformers.append((f"text{i}", Pipeline(steps), [col]))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)


def _entry_point_module(config: dict[str, Any]) -> tuple[str, str]:
    mod, _, func = config["entry_point"].partition(":")
    return mod, func


def entry_point_file(config: dict[str, Any]) -> Path | None:
    """The file of the entry point's module (for the reuse key and the run record), without importing it."""
    if not config.get("entry_point"):
        return None
    mod, _ = _entry_point_module(config)
    base = Path(config["_base_dir"])
    rel = Path(*mod.split("."))
    for cand in (base / rel.with_suffix(".py"), base / rel / "__init__.py"):
        if cand.is_file():
            return cand
    with _on_path(base):
        try:
            spec = importlib.util.find_spec(mod)
        except (ImportError, ValueError):
            spec = None
    if spec is not None and spec.origin and os.path.isfile(spec.origin):
        return Path(spec.origin)
    return None


@contextlib.contextmanager
def _on_path(path: Path) -> Iterator[None]:
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(path))


def load_entry_point(config: dict[str, Any]) -> Any:
    src = config["_config_file"]
    mod_name, func_name = _entry_point_module(config)
    base = Path(config["_base_dir"])
    # always import afresh: a module of that name may come from another directory, or have changed
    for name in [m for m in sys.modules if m == mod_name or m.startswith(mod_name + ".")]:
        del sys.modules[name]
    with _on_path(base):
        try:
            module = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name and mod_name.startswith(exc.name):
                raise ModelCIError(f"{src}: entry_point: module '{mod_name}' not found in "
                                   f"{display_path(base)}; put {mod_name.replace('.', '/')}.py next to the config "
                                   "file") from None
            raise ModelCIError(f"{src}: entry_point: importing '{mod_name}' failed: {exc}; install the "
                               "missing package or fix the import") from None
        except Exception as exc:  # noqa: BLE001 - user code
            raise ModelCIError(f"{src}: entry_point: importing '{mod_name}' failed: "
                               f"{type(exc).__name__}: {exc}; fix the module") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ModelCIError(f"{src}: entry_point: module '{mod_name}' has no function '{func_name}'; define "
                           f"def {func_name}(config): return <unfitted estimator>")
    try:
        params = inspect.signature(func).parameters
        takes_arg = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                        for p in params.values())
    except (TypeError, ValueError):
        takes_arg = False
    try:
        from .config import public
        est = func(copy.deepcopy(public(config))) if takes_arg else func()
    except Exception as exc:  # noqa: BLE001 - user code
        raise ModelCIError(f"{src}: entry_point: {config['entry_point']}() raised {type(exc).__name__}: {exc}; "
                           "fix the function") from None
    if not (hasattr(est, "fit") and hasattr(est, "predict") and hasattr(est, "get_params")):
        raise ModelCIError(f"{src}: entry_point: {config['entry_point']}() returned {type(est).__name__}, not an "
                           "unfitted scikit-learn estimator or Pipeline; return e.g. make_pipeline(...)")
    return est


def build_model(config: dict[str, Any], X: pd.DataFrame | None = None) -> tuple[Any, list[str]]:
    """The unfitted model and the names of the random_state params set to the config's seed."""
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    if config.get("entry_point"):
        est = load_entry_point(config)
        try:
            model = clone(est)
        except Exception as exc:  # noqa: BLE001 - user object
            raise ModelCIError(f"{config['_config_file']}: entry_point: {config['entry_point']}() returned an object "
                               f"scikit-learn cannot clone ({exc}); return an unfitted estimator whose __init__ "
                               "only stores its parameters") from None
    else:
        cls = import_object(config["estimator"]["class"])
        try:
            est = cls(**config["estimator"]["params"])
        except Exception as exc:  # noqa: BLE001
            raise ModelCIError(f"{config['_config_file']}: estimator.params: {cls.__name__}(...) failed: {exc}; "
                               "fix the parameters") from None
        model = Pipeline([("preprocess", build_preprocessor(config, X)), ("estimator", est)])
    seeded = []
    for name, value in model.get_params(deep=True).items():
        if name.endswith("random_state") and value is None:
            seeded.append(name)
    if seeded:
        model.set_params(**{n: config["seed"] for n in seeded})
    return model, seeded


# ---------------------------------------------------------------------------------------------- search
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


# ---------------------------------------------------------------------------------------------- stats
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
    for col in config["features"]["text"]:
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
              for k in ("numeric", "categorical", "text") for c in config["features"][k]]
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


# ---------------------------------------------------------------------------------------------- evaluate
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
    from .steps import evaluate as evaluate_step  # the one scoring path, shared with the gate
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
