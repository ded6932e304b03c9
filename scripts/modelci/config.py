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

Structure, types and defaults: the JSON Schema scripts/modelci/schemas/modelci.schema.json (editors
can use it; docs/config.md is generated from it by tools/gen_config_docs.py). This module adds the
checks a schema cannot express (columns listed once, metric names of the task, estimator classes and
parameters, paths, regular expressions, search spaces, gate cross-checks).
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

from . import schemas
from .errors import ModelCIError
from .metrics import CLASSIFICATION_METRICS, PER_CLASS_METRICS, REGRESSION_METRICS

DEFAULT_CONFIG = "model/modelci.yml"

FEATURE_KINDS = ("numeric", "categorical", "text")


SCHEMA_KIND = "modelci"  # scripts/modelci/schemas/modelci.schema.json
# The top-level keys in the (kind, keys, extra keys allowed) shape earlier callers used.
SCHEMA = ("dict", schemas.load(SCHEMA_KIND)["properties"], False)

DEFAULT_ESTIMATOR = {
    "classification": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 1000}},
    "regression": {"class": "sklearn.linear_model.Ridge", "params": {}},
}


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
        raise fail("", f"expected a mapping of keys (model, data, target, features, ...), got "
                       f"{schemas.type_name(raw)}")
    schemas.validate(SCHEMA_KIND, raw, source)
    cfg = schemas.resolve(SCHEMA_KIND, raw)

    # normalisations
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
    names: dict[str, str] = {}
    for kind in FEATURE_KINDS:
        for i, entry in enumerate(cfg["features"][kind]):
            if isinstance(entry, dict):  # a combined text feature: {name, columns}
                key = f"features.{kind}[{i}].name"
                where = names.get(entry["name"]) or seen.get(entry["name"])
                if where is not None:
                    raise fail(key, f"'{entry['name']}' is already used by {where}; give each feature a unique name")
                names[entry["name"]] = key
                cols = [(f"features.{kind}[{i}].columns[{j}]", col) for j, col in enumerate(entry["columns"])]
            else:
                cols = [(f"features.{kind}[{i}]", entry)]
            for key, col in cols:
                if col in seen:
                    raise fail(key, f"column '{col}' is already listed under {seen[col]}; list each column once")
                if col in names:
                    raise fail(key, f"'{col}' is the name of the combined feature {names[col]}; rename the feature")
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
    _check_gate_lists(gate, seen, fail)
    from .gate.policy import normalize_policy  # the gate's finer rules (docs/gate.md)
    normalize_policy(gate, cfg["task"], source=source)
    on_drift = cfg["monitor"].get("on_drift") or []
    if len(set(on_drift)) != len(on_drift):
        raise fail("monitor.on_drift", f"{on_drift} lists a value twice; list each of issue, retrain once")

    cfg["_config_file"] = source
    cfg["_base_dir"] = str(Path(base_dir).resolve())
    return cfg


def _check_gate_lists(gate: dict[str, Any], inputs: dict[str, str],
                      fail: Callable[[str, str], ModelCIError]) -> None:
    """Cross-checks of gate.slices and gate.expectations (their shapes are the schema's)."""
    for i, sl in enumerate(gate.get("slices", [])):
        key = f"gate.slices[{i}]"
        if "bins" in sl and "length_bins" in sl:
            raise fail(key, "both bins and length_bins are set; keep one (bins: numeric buckets, length_bins: "
                            "text-length buckets, neither: one slice per value)")
        for name in ("bins", "length_bins"):
            edges = sl.get(name)
            if edges is not None and any(b <= a for a, b in zip(edges, edges[1:])):
                raise fail(f"{key}.{name}", f"{edges} is not in ascending order; list the edges from lowest to "
                                            "highest, each once")
    used: dict[str, str] = {}
    for i, exp in enumerate(gate.get("expectations", [])):
        key = f"gate.expectations[{i}]"
        if exp["name"] in used:
            raise fail(f"{key}.name", f"'{exp['name']}' is already the name of {used[exp['name']]}; give each "
                                      "expectation a unique name")
        used[exp["name"]] = key
        if "invariant" in exp and "input" in exp:
            raise fail(key, "an invariant takes its records from invariant; remove input")
        if "range" in exp and exp["range"][0] > exp["range"][1]:
            raise fail(f"{key}.range", f"{exp['range']} is not [low, high] with low <= high")
        records = [(f"{key}.input", exp["input"])] if "input" in exp else \
            [(f"{key}.invariant[{j}]", r) for j, r in enumerate(exp.get("invariant", []))]
        for rkey, record in records:
            for col in record:
                if col not in inputs:
                    near = difflib.get_close_matches(str(col), list(inputs), n=1)
                    hint = f" (did you mean '{near[0]}'?)" if near else ""
                    raise fail(f"{rkey}.{col}", f"'{col}' is not an input column of the model{hint}; inputs are "
                                                f"{', '.join(inputs)}")


def input_columns(config: dict[str, Any]) -> list[str]:
    """The model's raw input columns in signature order: numeric, categorical, then text (a combined
    text feature contributes its columns)."""
    out: list[str] = []
    for kind in FEATURE_KINDS:
        for entry in config["features"][kind]:
            out.extend(entry["columns"] if isinstance(entry, dict) else [entry])
    return out


def text_features(config: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(name, columns) of every text feature: a plain column is its own one-column feature."""
    return [(e["name"], list(e["columns"])) if isinstance(e, dict) else (e, [e])
            for e in config["features"]["text"]]


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
