"""Behaviour checks and slices: what aggregate metrics cannot show (docs/gate.md).

- `run_expectations(predict, expectations, columns)`: each `gate.expectations` case (an input record
  and its expected label or range, or records that must get the same prediction) becomes one check;
  any failure makes the verdict REJECT, for the first model too.
- `slice_labels(X, slice_spec)`: the slice each hold-out row belongs to for one `gate.slices` entry
  (a categorical value, a numeric bin or a text-length bin).
Cases and slices are written in the model's raw input columns (what the serving API accepts).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import ModelCIError
from .stats import _key

MAX_CATEGORIES = 20  # categorical slices: the most frequent values, the rest grouped as "other"
MISSING = "(missing)"
OTHER = "(other)"


def _same(a: Any, b: Any) -> bool:
    a, b = _key(a), _key(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b or str(a) == str(b)


def run_expectations(predict: Callable[[Any], Any], expectations: Sequence[dict[str, Any]],
                     columns: Sequence[str], *, source: str = "config") -> list[dict[str, Any]]:
    """One check per expectation. `predict` maps a DataFrame of input records to predictions;
    `columns` are the model's raw input columns (missing ones are sent as null, as the API does)."""
    import pandas as pd

    checks = []
    for exp in expectations:
        where = f"{source}: gate.expectations ({exp['name']})"
        unknown = sorted({c for rec in exp["inputs"] for c in rec} - set(columns)) if columns else []
        if unknown:
            raise ModelCIError(f"{where}: input column(s) {', '.join(unknown)} are not inputs of the model; "
                               f"use {', '.join(columns)}")
        frame = pd.DataFrame([{c: rec.get(c) for c in columns} if columns else rec for rec in exp["inputs"]])
        try:
            preds = [_key(v) for v in np.asarray(predict(frame)).reshape(-1).tolist()]
        except ModelCIError:
            raise
        except Exception as exc:  # noqa: BLE001 - a case the model cannot score is a config error
            raise ModelCIError(f"{where}: the candidate cannot predict this input ({type(exc).__name__}: "
                               f"{str(exc)[:160]}); give every input column: {', '.join(columns)}") from None
        check: dict[str, Any] = {"name": f"expectation {exp['name']}", "kind": "expectation",
                                 "expectation": exp["name"], "value": preds if len(preds) > 1 else preds[0]}
        if exp["kind"] == "expect":
            ok = _same(preds[0], exp["expect"])
            check["message"] = (f"{exp['name']}: predicted {preds[0]!r}, expected {exp['expect']!r}")
        elif exp["kind"] == "range":
            lo, hi = exp["range"]
            value = float(preds[0])
            ok = math.isfinite(value) and lo <= value <= hi
            check["message"] = f"{exp['name']}: predicted {value:.4g}, expected within [{lo:g}, {hi:g}]"
        else:
            ok = all(_same(p, preds[0]) for p in preds[1:])
            check["message"] = (f"{exp['name']}: {len(preds)} inputs all predicted {preds[0]!r}" if ok else
                                f"{exp['name']}: inputs that must get the same prediction got {preds!r}")
        check["passed"] = bool(ok)
        if not ok:
            check["message"] = "expectation broken: " + check["message"]
        checks.append(check)
    return checks


def _bin_labels(values: np.ndarray, edges: Sequence[float], unit: str = "") -> tuple[list[str], list[str]]:
    names = [f"< {edges[0]:g}{unit}"]
    names += [f"[{a:g}, {b:g}){unit}" for a, b in zip(edges, edges[1:])]
    names.append(f">= {edges[-1]:g}{unit}")
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(MISSING)
        else:
            out.append(names[int(np.searchsorted(np.asarray(edges), float(v), side="right"))])
    return out, names + [MISSING]


def slice_labels(X: Any, spec: dict[str, Any], *, source: str = "config", index: int = 0
                 ) -> tuple[np.ndarray, list[str]]:
    """(label of each row, the labels in display order) for one `gate.slices` entry."""
    column = spec["column"]
    if column not in getattr(X, "columns", []):
        raise ModelCIError(f"{source}: gate.slices[{index}].column: {column!r} is not a column of the hold-out "
                           f"inputs; use one of {', '.join(map(str, X.columns))}")
    raw = X[column].tolist()
    if "bins" in spec:
        values = []
        for v in raw:
            try:
                values.append(None if v is None else float(v))
            except (TypeError, ValueError):
                raise ModelCIError(f"{source}: gate.slices[{index}].bins: column {column!r} has the non-numeric "
                                   f"value {v!r}; use length_bins for text or no bins for categories") from None
        labels, order = _bin_labels(np.asarray(values, dtype=object), spec["bins"])
    elif "length_bins" in spec:
        lengths = [None if v is None or (isinstance(v, float) and math.isnan(v)) else len(str(v)) for v in raw]
        labels, order = _bin_labels(np.asarray(lengths, dtype=object), spec["length_bins"], " chars")
    else:
        labels = [MISSING if v is None or (isinstance(v, float) and math.isnan(v)) else str(_key(v))
                  for v in raw]
        counts: dict[str, int] = {}
        for lab in labels:
            counts[lab] = counts.get(lab, 0) + 1
        ranked = sorted(counts, key=lambda k: (-counts[k], k))
        keep = set(ranked[:MAX_CATEGORIES])
        labels = [lab if lab in keep else OTHER for lab in labels]
        order = sorted(keep) + ([OTHER] if len(ranked) > MAX_CATEGORIES else [])
    arr = np.asarray(labels, dtype=object)
    present = set(labels)
    return arr, [lab for lab in order if lab in present]
