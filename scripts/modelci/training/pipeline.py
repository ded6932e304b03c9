"""Building the model a config describes (no fitting): the preprocessing + estimator Pipeline, or an
entry point's estimator, with unset random_state params seeded from the config.

See the package docstring (modelci.training) for the pipeline's layout.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import importlib.util
import inspect
import operator
import os
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import display_path, import_object, text_features
from ..errors import ModelCIError


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


def text_pipeline(config: dict[str, Any], combined: bool) -> Any:
    """fill -> (join) -> tfidf for one text feature, from stock pieces only (the serving image has no
    modelci code): missing values become "" (`to_numpy(na_value="")`, cheap and stateless, unlike a
    SimpleImputer's validation), and a combined feature's columns are joined row by row with a space."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    opt = config["preprocessing"]["text"]
    vec = TfidfVectorizer(lowercase=opt["lowercase"], strip_accents=opt["strip_accents"],
                          token_pattern=opt["token_pattern"], stop_words=stop_words(config),
                          ngram_range=tuple(opt["ngram_range"]), analyzer=opt["analyzer"],
                          min_df=opt["min_df"], max_df=opt["max_df"], max_features=opt["max_features"],
                          sublinear_tf=opt["sublinear_tf"], binary=opt["binary"], dtype=np.float64)
    steps: list[tuple[str, Any]] = [
        ("fill", FunctionTransformer(operator.methodcaller("to_numpy", dtype=object, na_value="")))]
    if combined:
        steps.append(("join", FunctionTransformer(functools.partial(map, " ".join))))
    steps.append(("tfidf", vec))
    return Pipeline(steps)


def build_preprocessor(config: dict[str, Any], X: pd.DataFrame | None = None) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
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
    for i, (_, cols) in enumerate(text_features(config)):
        # a plain column is selected by name as a 1-D Series; a combined feature as a frame of its columns
        transformers.append((f"text{i}", text_pipeline(config, combined=len(cols) > 1),
                             cols if len(cols) > 1 else cols[0]))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)


def _preprocess_step(config: dict[str, Any], X: pd.DataFrame | None) -> Any:
    """The ColumnTransformer, except for a model whose only feature is one combined text feature:
    there a ColumnTransformer's per-call cost would exceed the whole prediction's, and the text
    pipeline takes the raw frame itself (Pipeline([("text0", ...)]); parameter names stay
    preprocess__text0__...)."""
    from sklearn.pipeline import Pipeline

    feats = config["features"]
    texts = text_features(config)
    if not feats["numeric"] and not feats["categorical"] and len(texts) == 1 and len(texts[0][1]) > 1:
        return Pipeline([("text0", text_pipeline(config, combined=True))])
    return build_preprocessor(config, X)


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
        from ..config import public
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
        model = Pipeline([("preprocess", _preprocess_step(config, X)), ("estimator", est)])
    seeded = []
    for name, value in model.get_params(deep=True).items():
        if name.endswith("random_state") and value is None:
            seeded.append(name)
    if seeded:
        model.set_params(**{n: config["seed"] for n in seeded})
    return model, seeded
