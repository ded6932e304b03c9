"""Train / hold-out assignment by a stable hash of a row key (docs/design.md#evaluation-set-and-champion).

A row belongs to the hold-out set iff

    int(sha256(key).hexdigest()[:16], 16) % 10_000  <  round(fraction * 10_000)

where `key` is the row's id-column value (when the config declares `id_column`) or, without one, the
row's canonical content. Nothing depends on the other rows, the file order or a random state:
appending rows never moves an old row between the sets, and every tool (train, gate, reproduce)
computes the same sets from the same data.

Canonical forms (so that a column's dtype changing on append does not move rows):
  numbers   -> repr(float(v)) ("3" and "3.0" both give "3.0"); bools -> "True"/"False"
  missing   -> "" (NaN, None, empty cell)
  strings   -> unchanged, except strings that parse as a number, which are canonicalised as numbers
  row key   -> "name=value" pairs of every column except the id, sorted by column name, joined by "\\x1f"
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

BUCKETS = 10_000


def canonical(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        f = float(value)
        return "" if math.isnan(f) else repr(f)
    if isinstance(value, str):
        try:  # "3" in a column that became text on append hashes like the number 3 it was before
            f = float(value)
        except ValueError:
            return value
        return "" if math.isnan(f) else repr(f)
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value)


def bucket(key: str) -> int:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:16], 16) % BUCKETS


def _canonical_column(series: pd.Series) -> list[str]:
    if pd.api.types.is_bool_dtype(series.dtype):
        return [canonical(v) for v in series.tolist()]
    if pd.api.types.is_numeric_dtype(series.dtype):
        arr = series.to_numpy(dtype=float, na_value=np.nan)
        return ["" if math.isnan(v) else repr(v) for v in arr.tolist()]
    return [canonical(v) for v in series.tolist()]


def row_keys(df: pd.DataFrame, id_column: str | None = None) -> list[str]:
    """The hash key of every row (see module docstring)."""
    if id_column is not None:
        return _canonical_column(df[id_column])
    cols = sorted(c for c in df.columns)
    parts = [[f"{c}={v}" for v in _canonical_column(df[c])] for c in cols]
    return ["\x1f".join(p) for p in zip(*parts)] if parts else [""] * len(df)


def holdout_mask(df: pd.DataFrame, fraction: float, id_column: str | None = None) -> np.ndarray:
    """Boolean array: True for hold-out rows."""
    limit = round(fraction * BUCKETS)
    keys: Iterable[str] = row_keys(df, id_column)
    return np.fromiter((bucket(k) < limit for k in keys), dtype=bool, count=len(df))
