"""The model config file (model/modelci.yml): load, validate, fill in defaults.

`load_config(path)` returns the *resolved* config: every section present, every default filled in,
validated for structure and types. Every problem raises ModelCIError with one line naming the file,
the key path and the fix, e.g.

    model/modelci.yml: estimator.parms: unknown key; valid keys are class, params (did you mean 'params'?)

Paths inside the config (data files, stop-word files, the entry point's module) are relative to the
directory that holds the config file. Checks that need the data (columns exist, types) are done by
`modelci.data` and reported in the same format.

The resolved config carries two private keys that are not part of the file: `_config_file` (the path
as given) and `_base_dir` (absolute directory the config's paths are relative to). `public(config)`
drops them (that is what the run record and the reuse key hold).

Documentation of every key: docs/config.md. Keep SCHEMA, the docs and the defaults in step.
"""
from __future__ import annotations

import copy
import difflib
import importlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ModelCIError
from .metrics import CLASSIFICATION_METRICS, PER_CLASS_METRICS, REGRESSION_METRICS

DEFAULT_CONFIG = "model/modelci.yml"

TASKS = ("classification", "regression")
FEATURE_KINDS = ("numeric", "categorical", "text")
NUMERIC_IMPUTE = ("median", "mean", "most_frequent", "constant", "none")
NUMERIC_SCALE = ("standard", "minmax", "robust", "maxabs", "none")
CATEGORICAL_IMPUTE = ("most_frequent", "constant", "none")
HANDLE_UNKNOWN = ("ignore", "infrequent_if_exist", "error")
STRIP_ACCENTS = ("unicode", "ascii")
ANALYZERS = ("word", "char", "char_wb")
SEARCH_METHODS = ("grid", "random")
DRIFT_METHODS = ("psi", "ks")
ON_DRIFT = ("issue", "retrain")  # monitor.on_drift: what a drifted check does (docs/monitoring.md)


# --------------------------------------------------------------------------------------------------
# A tiny declarative schema. Each node is one of:
#   ("dict", {key: (node, default_or_REQUIRED)}, allow_extra_keys: bool)
#   ("list", item_node)           ("map", value_node)   -- map: free-form keys, typed values
#   ("str", choices_or_None)      ("int", min)   ("float", min, max)   ("bool",)   ("any",)
#   ("opt", node)                 -- the value may be null
#   ("oneof", [node, ...])        -- first that validates wins
# --------------------------------------------------------------------------------------------------
REQUIRED = object()
OMIT = object()  # optional, not filled in when absent

STR = ("str", None)
NUM = ("float", None, None)
PINT = ("int", 1)
NNINT = ("int", 0)
STRLIST = ("list", STR)

_THRESHOLD = ("dict", {"min": (NUM, OMIT), "max": (NUM, OMIT)}, False)

GATE_SCHEMA = ("dict", {
    "primary_metric": (STR, OMIT),
    "thresholds": (("map", _THRESHOLD), {}),
    "allowed_regression": (("float", 0.0, None), OMIT),
    "per_class_min": (("map", ("float", None, None)), OMIT),
    "promote_no_change": (("bool",), OMIT),
    "dry_run": (("bool",), OMIT),
    "bootstrap": (("dict", {"samples": (PINT, OMIT), "confidence": (("float", 0.0, 1.0), OMIT),
                            "seed": (("int", None), OMIT)}, False), OMIT),
    # issue 13 (docs/gate.md); their finer rules are checked by modelci.gate.policy below
    "max_interval_width": (("float", 0.0, None), OMIT),
    "min_holdout_rows": (PINT, OMIT),
    "promote_inconclusive": (("bool",), OMIT),
    "max_dropped_share": (("float", 0.0, 1.0), OMIT),
    "max_slice_regression": (("float", 0.0, None), OMIT),
    "slices": (("list", ("dict", {"column": (STR, REQUIRED), "bins": (("list", NUM), OMIT),
                                  "length_bins": (("list", ("int", 0)), OMIT)}, False)), OMIT),
    "expectations": (("list", ("dict", {"name": (STR, REQUIRED), "input": (("map", ("any",)), OMIT),
                                        "expect": (("any",), OMIT), "range": (("list", NUM), OMIT),
                                        "invariant": (("list", ("map", ("any",))), OMIT)}, False)), OMIT),
}, False)

MONITOR_SCHEMA = ("dict", {
    "drift_threshold": (("float", 0.0, None), OMIT),
    "method": (("str", DRIFT_METHODS), OMIT),
    "on_drift": (("list", ("str", ON_DRIFT)), ["issue"]),
}, False)

SCHEMA = ("dict", {
    "model": (("dict", {"name": (STR, REQUIRED), "major": (NNINT, 1)}, False), REQUIRED),
    "data": (("dict", {"files": (("oneof", [STRLIST, STR]), REQUIRED), "sep": (STR, ","),
                       "encoding": (STR, "utf-8")}, False), REQUIRED),
    "task": (("str", TASKS), "classification"),
    "target": (STR, REQUIRED),
    "id_column": (("opt", STR), None),
    "features": (("dict", {k: (STRLIST, []) for k in FEATURE_KINDS}, False), REQUIRED),
    "preprocessing": (("dict", {
        "numeric": (("dict", {
            "impute": (("str", NUMERIC_IMPUTE), "median"),
            "fill_value": (NUM, 0.0),
            "scale": (("str", NUMERIC_SCALE), "standard"),
            "add_indicator": (("bool",), False),
        }, False), {}),
        "categorical": (("dict", {
            "impute": (("str", CATEGORICAL_IMPUTE), "constant"),
            "fill_value": (STR, "missing"),
            "handle_unknown": (("str", HANDLE_UNKNOWN), "ignore"),
            "min_frequency": (("opt", ("oneof", [PINT, ("float", 0.0, 1.0)])), None),
            "max_categories": (("opt", ("int", 2)), None),
            "drop": (("opt", ("str", ("first", "if_binary"))), None),
        }, False), {}),
        "text": (("dict", {
            "lowercase": (("bool",), True),
            "strip_accents": (("opt", ("str", STRIP_ACCENTS)), None),
            "token_pattern": (STR, r"(?u)\b\w\w+\b"),
            "stop_words": (("opt", ("oneof", [STRLIST, STR])), None),
            "ngram_range": (("list", PINT), [1, 1]),
            "analyzer": (("str", ANALYZERS), "word"),
            "min_df": (("oneof", [PINT, ("float", 0.0, 1.0)]), 1),
            "max_df": (("oneof", [PINT, ("float", 0.0, 1.0)]), 1.0),
            "max_features": (("opt", PINT), None),
            "sublinear_tf": (("bool",), False),
            "binary": (("bool",), False),
        }, False), {}),
    }, False), {}),
    "estimator": (("opt", ("dict", {"class": (STR, REQUIRED), "params": (("map", ("any",)), {})}, False)), None),
    "entry_point": (("opt", STR), None),
    "search": (("opt", ("dict", {
        "method": (("str", SEARCH_METHODS), "grid"),
        "params": (("map", ("oneof", [("list", ("any",)), ("map", ("any",))])), REQUIRED),
        "cv": (("int", 2), 5),
        "scoring": (("opt", STR), None),
        "n_iter": (PINT, 10),
        "n_jobs": (("int", -1), 1),
    }, False)), None),
    "holdout": (("dict", {"fraction": (("float", 0.0, 1.0), 0.25)}, False), {}),
    "metrics": (("opt", STRLIST), None),
    "seed": (("int", 0), 42),
    "gate": (GATE_SCHEMA, {}),
    "monitor": (MONITOR_SCHEMA, {}),
}, False)

DEFAULT_ESTIMATOR = {
    "classification": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 1000}},
    "regression": {"class": "sklearn.linear_model.Ridge", "params": {}},
}


def _tname(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _expect(node: tuple) -> str:
    kind = node[0]
    if kind == "dict":
        return "a mapping"
    if kind in ("list",):
        return f"a list of {_expect(node[1]).removeprefix('a ').removeprefix('an ')}s"
    if kind == "map":
        return "a mapping"
    if kind == "str":
        return "one of " + ", ".join(node[1]) if node[1] else "a string"
    if kind == "int":
        return "an integer" + (f" >= {node[1]}" if node[1] is not None else "")
    if kind == "float":
        lo, hi = node[1], node[2]
        rng = f" between {lo} and {hi}" if lo is not None and hi is not None else (f" >= {lo}" if lo is not None else "")
        return "a number" + rng
    if kind == "bool":
        return "true or false"
    if kind == "opt":
        return _expect(node[1]) + " or null"
    if kind == "oneof":
        return " or ".join(_expect(n) for n in node[1])
    return "a value"


class _Invalid(Exception):
    def __init__(self, path: str, msg: str):
        super().__init__(msg)
        self.path, self.msg = path, msg


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _validate(node: tuple, value: Any, path: str) -> Any:
    kind = node[0]
    if kind == "opt":
        return None if value is None else _validate(node[1], value, path)
    if kind == "any":
        return value
    if kind == "oneof":
        errors = []
        for sub in node[1]:
            try:
                return _validate(sub, value, path)
            except _Invalid as exc:
                errors.append(exc)
        # report the deepest error (most specific) when the value had the right container type
        deep = [e for e in errors if e.path != path]
        if deep:
            raise deep[0]
        raise _Invalid(path, f"expected {_expect(node)}, got {_tname(value)} {value!r}")
    if kind == "dict":
        if not isinstance(value, dict):
            raise _Invalid(path, f"expected a mapping, got {_tname(value)} {value!r}")
        spec: dict[str, tuple] = node[1]
        out: dict[str, Any] = {}
        for key in value:
            if key not in spec:
                near = difflib.get_close_matches(str(key), list(spec), n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                raise _Invalid(_join(path, str(key)), f"unknown key; valid keys are {', '.join(spec)}{hint}")
        for key, (sub, default) in spec.items():
            if key in value:
                out[key] = _validate(sub, value[key], _join(path, key))
            elif default is REQUIRED:
                raise _Invalid(_join(path, key), f"required key is missing; add it ({_expect(sub)})")
            elif default is not OMIT:
                out[key] = _validate(sub, copy.deepcopy(default), _join(path, key)) if isinstance(default, dict) \
                    else copy.deepcopy(default)
        return out
    if kind == "map":
        if not isinstance(value, dict):
            raise _Invalid(path, f"expected a mapping, got {_tname(value)} {value!r}")
        return {str(k): _validate(node[1], v, _join(path, str(k))) for k, v in value.items()}
    if kind == "list":
        if not isinstance(value, list):
            raise _Invalid(path, f"expected {_expect(node)}, got {_tname(value)} {value!r}")
        return [_validate(node[1], v, _join(path, i)) for i, v in enumerate(value)]
    if kind == "str":
        if not isinstance(value, str):
            raise _Invalid(path, f"expected {_expect(node)}, got {_tname(value)} {value!r}")
        if node[1] and value not in node[1]:
            near = difflib.get_close_matches(value, list(node[1]), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise _Invalid(path, f"'{value}' is not valid; use one of {', '.join(node[1])}{hint}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise _Invalid(path, f"expected true or false, got {_tname(value)} {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(path, f"expected {_expect(node)}, got {_tname(value)} {value!r}")
        if node[1] is not None and value < node[1]:
            raise _Invalid(path, f"expected {_expect(node)}, got {value}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(path, f"expected {_expect(node)}, got {_tname(value)} {value!r}")
        lo, hi = node[1], node[2]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise _Invalid(path, f"expected {_expect(node)}, got {value}")
        return float(value)
    raise AssertionError(kind)


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as the user would type it: relative to the current directory when inside it."""
    p = Path(path)
    try:
        return os.path.relpath(p) if p.is_absolute() and not os.path.relpath(p).startswith("..") else str(p)
    except ValueError:
        return str(p)


def read_yaml(path: str | os.PathLike[str]) -> Any:
    import yaml

    shown = display_path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelCIError(f"{shown}: config file not found; pass --config PATH or set MODELCI_CONFIG "
                           f"(default {DEFAULT_CONFIG})") from None
    except IsADirectoryError:
        raise ModelCIError(f"{shown}: is a directory, not a config file; pass the YAML file's path") from None
    except UnicodeDecodeError as exc:
        raise ModelCIError(f"{shown}: not valid UTF-8 (byte {exc.start}); save the config as UTF-8") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ModelCIError(f"{shown}: {where}invalid YAML ({problem}); fix the syntax") from None


def load_config(path: str | os.PathLike[str] = DEFAULT_CONFIG) -> dict[str, Any]:
    """Read, validate and resolve a config file (see module docstring)."""
    raw = read_yaml(path)
    if raw is None:
        raise ModelCIError(f"{display_path(path)}: the config file is empty; see docs/config.md for an example")
    return validate_config(raw, source=display_path(path), base_dir=Path(path).resolve().parent)


def validate_config(raw: Any, source: str, base_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Validate a config document (already parsed). `source` names it in error messages."""

    def fail(key: str, msg: str) -> ModelCIError:
        return ModelCIError(f"{source}: {key}: {msg}" if key else f"{source}: {msg}")

    if not isinstance(raw, dict):
        raise fail("", f"expected a mapping of keys (model, data, target, features, ...), got {_tname(raw)}")
    try:
        cfg = _validate(SCHEMA, raw, "")
    except _Invalid as exc:
        raise fail(exc.path, exc.msg) from None

    # normalisations
    on_drift = cfg["monitor"].get("on_drift") or []
    if len(set(on_drift)) != len(on_drift):
        raise fail("monitor.on_drift", f"{on_drift} lists a value twice; list each of {', '.join(ON_DRIFT)} once")
    if isinstance(cfg["data"]["files"], str):
        cfg["data"]["files"] = [cfg["data"]["files"]]
    if not cfg["data"]["files"]:
        raise fail("data.files", "no data file listed; list at least one CSV file")
    _check_relative_paths(cfg["data"]["files"], "data.files", fail)
    if cfg["data"]["sep"] == "" or len(cfg["data"]["sep"]) > 1 and cfg["data"]["sep"] != r"\t":
        raise fail("data.sep", f"'{cfg['data']['sep']}' is not a one-character separator; use e.g. ',' or ';'")
    if cfg["data"]["sep"] == r"\t":
        cfg["data"]["sep"] = "\t"
    try:
        "".encode(cfg["data"]["encoding"])
    except LookupError:
        raise fail("data.encoding", f"unknown encoding '{cfg['data']['encoding']}'; use e.g. utf-8 or latin-1") from None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", cfg["model"]["name"]):
        raise fail("model.name", f"'{cfg['model']['name']}' is not a valid model name; use letters, digits, "
                                 "'.', '_' or '-' (it becomes part of image tags)")

    # features
    seen: dict[str, str] = {}
    for kind in FEATURE_KINDS:
        for i, col in enumerate(cfg["features"][kind]):
            key = f"features.{kind}[{i}]"
            if col in seen:
                raise fail(key, f"column '{col}' is already listed under {seen[col]}; list each column once")
            if col == cfg["target"]:
                raise fail(key, f"'{col}' is the target; the target cannot also be a feature")
            if cfg["id_column"] is not None and col == cfg["id_column"]:
                raise fail(key, f"'{col}' is the id_column; an id cannot be a feature")
            seen[col] = key
    if not seen:
        raise fail("features", "no feature listed; list input columns under features.numeric, "
                               "features.categorical or features.text")
    if cfg["id_column"] is not None and cfg["id_column"] == cfg["target"]:
        raise fail("id_column", "the id column cannot be the target")

    # estimator / entry point
    if cfg["estimator"] is not None and cfg["entry_point"] is not None:
        raise fail("entry_point", "both estimator and entry_point are set; keep one (entry_point replaces "
                                  "estimator)")
    if cfg["entry_point"] is not None:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", cfg["entry_point"]):
            raise fail("entry_point", f"'{cfg['entry_point']}' is not 'module:function'; e.g. "
                                      "entry_point: train:build_model (module train.py next to the config)")
    elif cfg["estimator"] is None:
        cfg["estimator"] = copy.deepcopy(DEFAULT_ESTIMATOR[cfg["task"]])
    if cfg["estimator"] is not None:
        _check_estimator(cfg["estimator"], cfg["task"], fail)

    # text options
    text = cfg["preprocessing"]["text"]
    if len(text["ngram_range"]) != 2 or text["ngram_range"][0] > text["ngram_range"][1]:
        raise fail("preprocessing.text.ngram_range", f"{text['ngram_range']} is not [min_n, max_n] with "
                                                     "min_n <= max_n; e.g. [1, 2]")
    try:
        re.compile(text["token_pattern"])
    except re.error as exc:
        raise fail("preprocessing.text.token_pattern", f"not a valid regular expression ({exc}); "
                                                       "e.g. '(?u)\\b\\w\\w+\\b'") from None
    if isinstance(text["stop_words"], str) and text["stop_words"] != "english":
        _check_relative_paths([text["stop_words"]], "preprocessing.text.stop_words", fail)
        if not (Path(base_dir) / text["stop_words"]).is_file():
            raise fail("preprocessing.text.stop_words",
                       f"file {display_path(Path(base_dir) / text['stop_words'])} not found; give a path "
                       "relative to the config file's directory (one word per line), a list, or 'english'")

    # metrics, search, gate
    task_metrics = CLASSIFICATION_METRICS if cfg["task"] == "classification" else REGRESSION_METRICS
    if cfg["metrics"] is not None:
        for i, m in enumerate(cfg["metrics"]):
            if m not in task_metrics:
                raise fail(f"metrics[{i}]", f"unknown {cfg['task']} metric '{m}'; use {', '.join(task_metrics)}")
    if cfg["search"] is not None:
        _check_search(cfg["search"], cfg["task"], fail)
    gate = cfg["gate"]
    for m in list(gate.get("thresholds", {})) + ([gate["primary_metric"]] if "primary_metric" in gate else []):
        if m not in task_metrics:
            key = "gate.primary_metric" if m == gate.get("primary_metric") else f"gate.thresholds.{m}"
            raise fail(key, f"unknown {cfg['task']} metric '{m}'; use {', '.join(task_metrics)}")
    for m, bounds in gate.get("thresholds", {}).items():
        if not bounds:
            raise fail(f"gate.thresholds.{m}", "give a bound: {min: 0.8} or {max: 0.2}")
    for m in gate.get("per_class_min", {}):
        if m not in PER_CLASS_METRICS:
            raise fail(f"gate.per_class_min.{m}", f"unknown per-class metric '{m}'; use "
                                                  f"{', '.join(PER_CLASS_METRICS)}")

    from .gate.policy import normalize_policy  # bins ascending, unique expectation names, ...
    normalize_policy(gate, cfg["task"], source=source)

    cfg["_config_file"] = source
    cfg["_base_dir"] = str(Path(base_dir).resolve())
    return cfg


def _check_relative_paths(paths: list[str], key: str, fail: Callable[[str, str], ModelCIError]) -> None:
    for i, p in enumerate(paths):
        k = f"{key}[{i}]" if len(paths) > 1 or key == "data.files" else key
        if not p.strip():
            raise fail(k, "empty path; give a path relative to the config file's directory")
        if os.path.isabs(p):
            raise fail(k, f"'{p}' is absolute; give a path relative to the config file's directory so the "
                          "config works in every checkout")


def import_object(path: str) -> Any:
    """'package.module.Name' or 'package.module:Name' -> the object (ImportError/AttributeError)."""
    if ":" in path:
        mod, _, name = path.partition(":")
    else:
        mod, _, name = path.rpartition(".")
    if not mod:
        raise ImportError(f"'{path}' has no module part")
    obj: Any = importlib.import_module(mod)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _check_estimator(est: dict[str, Any], task: str, fail: Callable[[str, str], ModelCIError]) -> None:
    try:
        cls = import_object(est["class"])
    except (ImportError, AttributeError, ValueError) as exc:
        raise fail("estimator.class", f"cannot import '{est['class']}' ({exc}); give a full import path such as "
                                      "sklearn.ensemble.RandomForestClassifier") from None
    if not isinstance(cls, type) or not hasattr(cls, "fit") or not hasattr(cls, "get_params"):
        raise fail("estimator.class", f"'{est['class']}' is not a scikit-learn estimator class")
    valid = set(cls().get_params(deep=False)) if _constructible(cls) else None
    if valid is not None:
        for name in est["params"]:
            if name not in valid:
                near = difflib.get_close_matches(name, sorted(valid), n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                raise fail(f"estimator.params.{name}", f"{cls.__name__} has no parameter '{name}'{hint}; valid: "
                                                       f"{', '.join(sorted(valid))}")
    kind = getattr(cls, "_estimator_type", None)
    if _constructible(cls):
        from sklearn.base import is_classifier, is_regressor

        inst = cls()
        kind = "classifier" if is_classifier(inst) else "regressor" if is_regressor(inst) else kind
    if task == "classification" and kind == "regressor" or task == "regression" and kind == "classifier":
        raise fail("estimator.class", f"{cls.__name__} is a {kind} but task is {task}; pick a matching estimator "
                                      "or change task")


def _constructible(cls: type) -> bool:
    try:
        cls()
        return True
    except Exception:  # noqa: BLE001 - estimators with required args (meta-estimators)
        return False


def _check_search(search: dict[str, Any], task: str, fail: Callable[[str, str], ModelCIError]) -> None:
    from sklearn.metrics import get_scorer_names

    if not search["params"]:
        raise fail("search.params", "empty search space; list parameters and candidate values, e.g. C: [0.1, 1, 10]")
    for name, space in search["params"].items():
        key = f"search.params.{name}"
        if isinstance(space, list):
            if not space:
                raise fail(key, "empty list of candidate values; give at least one value")
        else:
            if search["method"] != "random":
                raise fail(key, "a distribution needs search.method: random; with grid give a list of values")
            if len(space) != 1 or next(iter(space)) not in ("uniform", "loguniform", "randint"):
                raise fail(key, "a distribution is written {loguniform: [low, high]}, {uniform: [low, high]} or "
                                "{randint: [low, high]}")
            dist, bounds = next(iter(space.items()))
            if (not isinstance(bounds, list) or len(bounds) != 2
                    or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
                    or bounds[0] >= bounds[1] or (dist == "loguniform" and bounds[0] <= 0)):
                raise fail(key, f"{dist} needs [low, high] with low < high" + (" and low > 0" if dist == "loguniform"
                                                                              else ""))
    scoring = search["scoring"]
    task_metrics = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    if scoring is not None and scoring not in task_metrics and scoring not in get_scorer_names():
        raise fail("search.scoring", f"unknown scoring '{scoring}'; use one of {', '.join(task_metrics)} or a "
                                     "scikit-learn scorer name")


def public(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config without the private keys (what run.json records)."""
    return {k: v for k, v in config.items() if not k.startswith("_")}


def from_record(resolved: dict[str, Any], source: str, base_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Re-validate a resolved config stored in a run record (reproduce)."""
    return validate_config(copy.deepcopy(public(resolved)), source=source, base_dir=base_dir)
