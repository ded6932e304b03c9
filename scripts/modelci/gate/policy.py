"""The gate policy: the `gate:` section of modelci.yml, validated and filled with defaults.

  policy = normalize_policy(config["gate"], task, source="model/modelci.yml", default_seed=config.get("seed"))

Every key is described in docs/gate.md; a bad value is a one-line ModelCIError naming the field.
Metric names and directions come from the one registry, `modelci.metrics`.
"""
from __future__ import annotations

import math
from typing import Any

from .. import metrics as registry
from ..errors import ModelCIError

PER_CLASS_METRICS = registry.PER_CLASS_METRICS
POLICY_KEYS = {"primary_metric", "thresholds", "allowed_regression", "per_class_min", "promote_no_change",
               "promote_inconclusive", "dry_run", "bootstrap", "max_interval_width", "min_holdout_rows",
               "max_dropped_share", "max_slice_regression", "slices", "expectations"}
_BOOTSTRAP_KEYS = {"samples", "confidence", "seed"}
DEFAULT_MAX_DROPPED_SHARE = 0.1


def higher_is_better(metric: str) -> bool:
    m = registry.get(metric)
    if m is None:
        raise ModelCIError(f"gate: unknown metric {metric!r}; use one of {', '.join(registry.REGISTRY)}")
    return m.higher_is_better


def _num(value: Any, where: str, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ModelCIError(f"{where}: expected a finite number, got {value!r}; {fix}")
    return float(value)


def _ascending(value: Any, where: str, integers: bool) -> list[float]:
    kind = "integers" if integers else "numbers"
    if not isinstance(value, list) or not value or any(
            isinstance(v, bool) or not isinstance(v, int if integers else (int, float)) for v in value):
        raise ModelCIError(f"{where}: must be a non-empty list of {kind} (bin edges), got {value!r}")
    if any(not math.isfinite(v) for v in value) or any(b <= a for a, b in zip(value, value[1:])):
        raise ModelCIError(f"{where}: bin edges must be finite and strictly ascending, got {value!r}")
    return [float(v) for v in value]


def _slices(raw: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise ModelCIError(f"{source}: gate.slices: must be a list of {{column: name}} entries; see docs/gate.md")
    out = []
    for i, entry in enumerate(raw):
        where = f"{source}: gate.slices[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("column"), str) or not entry["column"]:
            raise ModelCIError(f"{where}: must be a mapping with a column name, e.g. {{column: color}}")
        extra = sorted(set(entry) - {"column", "bins", "length_bins"})
        if extra:
            raise ModelCIError(f"{where}: unknown key(s) {', '.join(extra)}; allowed: column, bins, length_bins")
        if "bins" in entry and "length_bins" in entry:
            raise ModelCIError(f"{where}: give bins (numeric column) or length_bins (text column), not both")
        item: dict[str, Any] = {"column": entry["column"]}
        if "bins" in entry:
            item["bins"] = _ascending(entry["bins"], f"{where}.bins", integers=False)
        if "length_bins" in entry:
            item["length_bins"] = [int(v) for v in _ascending(entry["length_bins"], f"{where}.length_bins",
                                                              integers=True)]
        out.append(item)
    return out


def _record(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not value or not all(isinstance(k, str) for k in value):
        raise ModelCIError(f"{where}: must be a mapping of input column -> value, e.g. {{name: Boneca}}")
    return dict(value)


def _expectations(raw: Any, task: str, source: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise ModelCIError(f"{source}: gate.expectations: must be a list of named cases; see docs/gate.md")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        where = f"{source}: gate.expectations[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise ModelCIError(f"{where}: name: every expectation needs a name (a string)")
        name = entry["name"]
        if name in seen:
            raise ModelCIError(f"{where}: name: {name!r} is used twice; give each expectation its own name")
        seen.add(name)
        where = f"{source}: gate.expectations[{i}] ({name})"
        kinds = [k for k in ("expect", "range", "invariant") if k in entry]
        if len(kinds) != 1:
            raise ModelCIError(f"{where}: give exactly one of expect (a label), range ([lo, hi]) or "
                               "invariant (a list of inputs)")
        kind = kinds[0]
        allowed = {"name", kind} | ({"input"} if kind != "invariant" else set())
        extra = sorted(set(entry) - allowed)
        if extra:
            raise ModelCIError(f"{where}: unknown key(s) {', '.join(extra)}; allowed: {', '.join(sorted(allowed))}")
        item: dict[str, Any] = {"name": name, "kind": kind}
        if kind == "invariant":
            records = entry["invariant"]
            if not isinstance(records, list) or len(records) < 2:
                raise ModelCIError(f"{where}: invariant: must list at least two inputs that must get the same "
                                   "prediction")
            item["inputs"] = [_record(r, f"{where}: invariant[{j}]") for j, r in enumerate(records)]
        else:
            if "input" not in entry:
                raise ModelCIError(f"{where}: input: missing; give the model's raw input columns, e.g. "
                                   "{name: Boneca}")
            item["inputs"] = [_record(entry["input"], f"{where}: input")]
            if kind == "expect":
                if task != "classification":
                    raise ModelCIError(f"{where}: expect: a label only applies to classification; use range: "
                                       "[lo, hi] for a regression model")
                if isinstance(entry["expect"], (dict, list)) or entry["expect"] is None:
                    raise ModelCIError(f"{where}: expect: must be one label, got {entry['expect']!r}")
                item["expect"] = entry["expect"]
            else:
                if task != "regression":
                    raise ModelCIError(f"{where}: range: only applies to regression; use expect: <label> for "
                                       "a classification model")
                rng = entry["range"]
                if not isinstance(rng, list) or len(rng) != 2:
                    raise ModelCIError(f"{where}: range: must be [lo, hi], got {rng!r}")
                lo = _num(rng[0], f"{where}: range[0]", "write a number")
                hi = _num(rng[1], f"{where}: range[1]", "write a number")
                if lo > hi:
                    raise ModelCIError(f"{where}: range: lo {lo:g} is above hi {hi:g}; write [lo, hi]")
                item["range"] = [lo, hi]
        out.append(item)
    return out


def normalize_policy(gate: dict[str, Any] | None, task: str, *, source: str = "config",
                     default_seed: int | None = None) -> dict[str, Any]:
    """Validate `gate:` and fill defaults. Raises ModelCIError naming the field on bad input."""
    if task not in ("classification", "regression"):
        raise ModelCIError(f"{source}: task: must be classification or regression, got {task!r}")
    gate = {} if gate is None else gate
    if not isinstance(gate, dict):
        raise ModelCIError(f"{source}: gate: must be a mapping; see docs/gate.md")
    unknown = sorted(set(gate) - POLICY_KEYS)
    if unknown:
        raise ModelCIError(f"{source}: gate: unknown key(s) {', '.join(unknown)}; "
                           f"allowed: {', '.join(sorted(POLICY_KEYS))}")
    primary = gate.get("primary_metric") or ("f1_macro" if task == "classification" else "rmse")
    known = registry.NAMES_BY_TASK[task]
    if primary not in known:
        raise ModelCIError(f"{source}: gate.primary_metric: {primary!r} cannot be compared with a paired "
                           f"bootstrap for a {task} model; use one of {', '.join(known)}")

    thresholds: dict[str, dict[str, float]] = {}
    raw_thr = gate.get("thresholds") or {}
    if not isinstance(raw_thr, dict):
        raise ModelCIError(f"{source}: gate.thresholds: must map metric -> {{min: x}} or {{max: x}}")
    for metric, spec in raw_thr.items():
        where = f"{source}: gate.thresholds.{metric}"
        if registry.get(str(metric), task) is None:
            raise ModelCIError(f"{where}: unknown {task} metric; use one of {', '.join(known)}")
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
    for key in ("promote_no_change", "promote_inconclusive", "dry_run"):
        value = gate.get(key, False)
        if not isinstance(value, bool):
            raise ModelCIError(f"{source}: gate.{key}: must be true or false, got {value!r}")
        flags[key] = value

    # Resolution: an interval wider than this, or fewer rows, cannot tell a regression of
    # allowed_regression from no change (INCONCLUSIVE). With allowed_regression 0 nothing can be
    # resolved by width, so there is no width limit (docs/gate.md, "Choosing allowed_regression").
    width = gate.get("max_interval_width")
    if width is None:
        max_width = 4 * allowed if allowed > 0 else None
    else:
        max_width = _num(width, f"{source}: gate.max_interval_width", "use a positive number in the metric's units")
        if max_width <= 0:
            raise ModelCIError(f"{source}: gate.max_interval_width: must be > 0, got {width}")
    min_rows = gate.get("min_holdout_rows", 1)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise ModelCIError(f"{source}: gate.min_holdout_rows: must be an integer >= 1, got {min_rows!r}")
    dropped = _num(gate.get("max_dropped_share", DEFAULT_MAX_DROPPED_SHARE), f"{source}: gate.max_dropped_share",
                   "use a share between 0 and 1, e.g. 0.1")
    if not 0 <= dropped <= 1:
        raise ModelCIError(f"{source}: gate.max_dropped_share: must be between 0 and 1, got {dropped}")
    slice_reg = gate.get("max_slice_regression")
    if slice_reg is not None:
        slice_reg = _num(slice_reg, f"{source}: gate.max_slice_regression", "use a number >= 0")
        if slice_reg < 0:
            raise ModelCIError(f"{source}: gate.max_slice_regression: must be >= 0, got {slice_reg}")

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
        "promote_inconclusive": flags["promote_inconclusive"],
        "dry_run": flags["dry_run"],
        "max_interval_width": max_width,
        "min_holdout_rows": min_rows,
        "max_dropped_share": dropped,
        "max_slice_regression": slice_reg,
        "slices": _slices(gate.get("slices") or [], source),
        "expectations": _expectations(gate.get("expectations") or [], task, source),
        "bootstrap": {"samples": samples, "confidence": confidence, "seed": seed},
    }
