"""Loading and validating the training data declared in the config.

Every check runs before any training and fails with ONE line naming the file (and line, key path)
and the fix. Checks, in order, per file:
  missing file / directory; empty file; Git LFS pointer instead of the data; an HTML page (an error
  or login page saved instead of the CSV); bytes that are not valid in data.encoding; CSV syntax;
  duplicate column names; only one column (wrong separator); header without rows; all files having
  the same columns.
Then against the config: target/id/feature columns exist; empty target values; id values missing;
numeric features that hold text; feature columns without any value; text columns that are all empty;
regression targets that are not numeric; classes with too few rows to split.

`load_dataset(config)` -> Dataset (all rows + file fingerprints);
`split_dataset(config, ds)` -> (train_frame, holdout_frame);
`load_holdout(config)` -> (X, y): raw input columns and target of the hold-out rows, the same rows for
every model trained on this data (the gate scores champion and candidate on them).
"""
from __future__ import annotations

import csv
import difflib
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import FEATURE_KINDS, display_path, input_columns
from .errors import ModelCIError
from .split import holdout_mask

LFS_MAGIC = b"version https://git-lfs.github.com/spec/"
OTHER_SEPARATORS = [",", ";", "\t", "|"]


@dataclass
class Dataset:
    frame: pd.DataFrame                      # every row of every file, in file order
    files: list[dict[str, Any]]              # [{"path", "sha256", "bytes", "rows"}] (path relative to config dir)
    sha256: str                              # sha256 over the data files' bytes, in the config's order
    origin_file: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=int))
    origin_line: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=int))

    def where(self, row: int) -> str:
        """'model/data/wine.csv line 12' for a row position of `frame` (used in error messages)."""
        f = self.files[int(self.origin_file[row])]
        return f"{f['display']} line {int(self.origin_line[row])}"


def data_paths(config: dict[str, Any]) -> list[Path]:
    base = Path(config["_base_dir"])
    return [base / p for p in config["data"]["files"]]


def fingerprint(config: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """sha256 + size of every data file without parsing them (reuse key). Missing files raise."""
    files = []
    total = hashlib.sha256()
    for i, path in enumerate(data_paths(config)):
        raw = _read_bytes(config, i, path)
        total.update(raw)
        files.append({"path": config["data"]["files"][i], "sha256": hashlib.sha256(raw).hexdigest(),
                      "bytes": len(raw)})
    return files, total.hexdigest()


def _read_bytes(config: dict[str, Any], i: int, path: Path) -> bytes:
    src = config["_config_file"]
    key = f"data.files[{i}]"
    shown = display_path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelCIError(f"{src}: {key}: data file {shown} does not exist; fix the path (paths are relative "
                           f"to the config file's directory, {display_path(config['_base_dir'])}) or add the "
                           "file") from None
    except IsADirectoryError:
        raise ModelCIError(f"{src}: {key}: {shown} is a directory; list the CSV files themselves") from None
    except PermissionError:
        raise ModelCIError(f"{src}: {key}: {shown} is not readable (permission denied); fix its "
                           "permissions") from None


def _check_bytes(raw: bytes, shown: str, encoding: str) -> str:
    """Content checks on one file's bytes; returns the decoded text."""
    if not raw.strip():
        raise ModelCIError(f"{shown}: the data file is empty; commit the data (a header line and rows)")
    if raw.startswith(LFS_MAGIC):
        raise ModelCIError(f"{shown}: is a Git LFS pointer file, not the data; fetch the LFS objects "
                           "(`git lfs pull`; in CI use a job image with git-lfs installed and do not set "
                           "GIT_LFS_SKIP_SMUDGE=1)")
    head = raw[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")) or b"<html" in head[:200]:
        raise ModelCIError(f"{shown}: is an HTML page, not CSV data (probably an error or login page saved by "
                           "a failed download); download the raw file again and check its first lines")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = raw[exc.start:exc.start + 1].hex()
        raise ModelCIError(f"{shown}: line {line}: byte 0x{byte} is not valid {encoding}; save the file as "
                           f"{encoding} or set data.encoding to the file's encoding (e.g. latin-1, cp1252)") from None
    text = text.removeprefix("\ufeff")
    if "\x00" in text[:4096]:
        raise ModelCIError(f"{shown}: contains NUL bytes, so it is not a text CSV file (a spreadsheet or "
                           "compressed file?); export it as CSV")
    return text


def _parse(text: str, raw: bytes, encoding: str, shown: str, sep: str, src: str) -> pd.DataFrame:
    end = text.find("\n")
    first_line = (text if end < 0 else text[:end]).rstrip("\r")
    try:
        header = next(csv.reader([first_line], delimiter=sep))
    except (csv.Error, StopIteration):
        header = [first_line]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise ModelCIError(f"{shown}: line 1: duplicate column name(s) {', '.join(repr(d) for d in dupes)}; "
                           "give every column a unique name")
    if len(header) < 2:
        guess = [s for s in OTHER_SEPARATORS if s != sep and s in first_line]
        shown_sep = "\\t" if sep == "\t" else sep
        if guess:
            g = "\\t" if guess[0] == "\t" else guess[0]
            raise ModelCIError(f"{shown}: only one column with separator '{shown_sep}' (header {first_line[:80]!r}); "
                               f"the file seems to use '{g}': set data.sep: \"{g}\" in {src}")
        raise ModelCIError(f"{shown}: only one column (header {first_line[:80]!r}); a data file needs the target "
                           "and at least one feature column; check data.sep and the file")
    empty = [i for i, h in enumerate(header) if not h.strip()]
    if empty:
        raise ModelCIError(f"{shown}: line 1: column {empty[0] + 1} has no name; name every column in the header")
    try:
        # parsing the bytes is faster than parsing the decoded text; the text was checked above
        enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        df = pd.read_csv(io.BytesIO(raw), sep=sep, encoding=enc, low_memory=False)
    except pd.errors.ParserError as exc:
        msg = str(exc).strip().splitlines()[-1]
        raise ModelCIError(f"{shown}: not valid CSV ({msg}); check the separator and the quoting on that "
                           "line") from None
    except pd.errors.EmptyDataError:
        raise ModelCIError(f"{shown}: the data file is empty; commit the data (a header line and rows)") from None
    if len(df) == 0:
        raise ModelCIError(f"{shown}: has a header but no data rows; add rows")
    return df


def load_dataset(config: dict[str, Any]) -> Dataset:
    """Read, check and concatenate the data files, then check them against the config."""
    src = config["_config_file"]
    sep, encoding = config["data"]["sep"], config["data"]["encoding"]
    frames: list[pd.DataFrame] = []
    files: list[dict[str, Any]] = []
    origin_file: list[np.ndarray] = []
    origin_line: list[np.ndarray] = []
    total = hashlib.sha256()
    for i, path in enumerate(data_paths(config)):
        raw = _read_bytes(config, i, path)
        total.update(raw)
        shown = display_path(path)
        text = _check_bytes(raw, shown, encoding)
        df = _parse(text, raw, encoding, shown, sep, src)
        if frames and set(df.columns) != set(frames[0].columns):
            missing = sorted(set(frames[0].columns) - set(df.columns))
            extra = sorted(set(df.columns) - set(frames[0].columns))
            raise ModelCIError(f"{shown}: columns differ from {files[0]['display']} (missing: "
                               f"{', '.join(missing) or '-'}; extra: {', '.join(extra) or '-'}); all data files "
                               "need the same columns")
        files.append({"path": config["data"]["files"][i], "display": shown,
                      "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw), "rows": len(df)})
        frames.append(df)
        origin_file.append(np.full(len(df), i, dtype=np.int32))
        # line numbers assume one line per record (no newlines inside quoted cells)
        origin_line.append(np.arange(2, len(df) + 2, dtype=np.int64))
    frame = frames[0] if len(frames) == 1 else pd.concat(
        [f[list(frames[0].columns)] for f in frames], ignore_index=True)
    ds = Dataset(frame=frame, files=files, sha256=total.hexdigest(),
                 origin_file=np.concatenate(origin_file), origin_line=np.concatenate(origin_line))
    _check_against_config(config, ds)
    return ds


def _col_missing(config: dict[str, Any], ds: Dataset, key: str, col: str) -> ModelCIError:
    cols = [str(c) for c in ds.frame.columns]
    near = difflib.get_close_matches(col, cols, n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    where = ds.files[0]["display"] if len(ds.files) == 1 else "the data files"
    listed = ", ".join(cols[:40]) + (", ..." if len(cols) > 40 else "")
    return ModelCIError(f"{config['_config_file']}: {key}: column '{col}' not in {where}{hint}; columns are "
                        f"{listed}; fix the name in the config or add the column")


def _check_against_config(config: dict[str, Any], ds: Dataset) -> None:
    src = config["_config_file"]
    df = ds.frame
    target = config["target"]
    if target not in df.columns:
        raise _col_missing(config, ds, "target", target)
    if config["id_column"] is not None and config["id_column"] not in df.columns:
        raise _col_missing(config, ds, "id_column", config["id_column"])
    for key, col in _feature_keys(config):
        if col not in df.columns:
            raise _col_missing(config, ds, key, col)

    y = df[target]
    empty = _missing_mask(y)
    if empty.any():
        first = int(np.flatnonzero(empty)[0])
        raise ModelCIError(f"{ds.where(first)}: target '{target}' is empty in {int(empty.sum())} row(s) (first "
                           "shown); fill in or drop those rows")
    if config["id_column"] is not None:
        ids = df[config["id_column"]]
        miss = _missing_mask(ids)
        if miss.any():
            first = int(np.flatnonzero(miss)[0])
            raise ModelCIError(f"{ds.where(first)}: id_column '{config['id_column']}' is empty in "
                               f"{int(miss.sum())} row(s) (first shown); give every row an id")
    if config["task"] == "regression" and not pd.api.types.is_numeric_dtype(y.dtype):
        bad = int(np.flatnonzero(pd.to_numeric(y, errors="coerce").isna().to_numpy())[0])
        raise ModelCIError(f"{ds.where(bad)}: target '{target}' value {df[target].iloc[bad]!r} is not a number, "
                           "but task is regression; fix the value or set task: classification")

    for i, col in enumerate(config["features"]["numeric"]):
        s = df[col]
        if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
            if pd.api.types.is_bool_dtype(s.dtype):
                df[col] = s.astype("float64")
                continue
            conv = pd.to_numeric(s, errors="coerce")
            bad = conv.isna().to_numpy() & ~_missing_mask(s)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ModelCIError(f"{ds.where(row)}: features.numeric[{i}] column '{col}' has a non-numeric value "
                                   f"{s.iloc[row]!r} ({int(bad.sum())} such row(s)); fix the values or list the "
                                   "column under features.categorical or features.text")
            df[col] = conv
        if df[col].isna().all():
            raise ModelCIError(f"{src}: features.numeric[{i}]: column '{col}' has no values in any row; fill it "
                               "or remove it from the features")
    for i, col in enumerate(config["features"]["categorical"]):
        if _missing_mask(df[col]).all():
            raise ModelCIError(f"{src}: features.categorical[{i}]: column '{col}' has no values in any row; fill "
                               "it or remove it from the features")
    for key, col in _feature_keys(config, "text"):
        s = df[col]
        vals = s[~_missing_mask(s)].astype(str).str.strip()
        if (vals == "").all():
            raise ModelCIError(f"{src}: {key}: text column '{col}' is empty in every row; fill it "
                               "or remove it from features.text")
        if pd.api.types.is_numeric_dtype(s.dtype):
            df[col] = s.astype(object).where(~_missing_mask(s), None).map(lambda v: v if v is None else str(v))


def _missing_mask(s: pd.Series) -> np.ndarray:
    mask = s.isna().to_numpy()
    if not pd.api.types.is_numeric_dtype(s.dtype):
        mask = mask | (s.astype(str).str.strip() == "").to_numpy()
    return mask


def _feature_keys(config: dict[str, Any], *kinds: str) -> list[tuple[str, str]]:
    """(key path in the config, column) of every raw input column of the given kinds (default: all)."""
    out = []
    for kind in kinds or FEATURE_KINDS:
        for i, entry in enumerate(config["features"][kind]):
            if isinstance(entry, dict):  # a combined text feature
                out += [(f"features.{kind}[{i}].columns[{j}]", c) for j, c in enumerate(entry["columns"])]
            else:
                out.append((f"features.{kind}[{i}]", entry))
    return out


def feature_columns(config: dict[str, Any]) -> list[str]:
    """The model's raw input columns (the serving signature), in declared order."""
    return input_columns(config)


def split_dataset(config: dict[str, Any], ds: Dataset) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(train frame, hold-out frame, hold-out mask). Checks that the split is usable."""
    mask = holdout_mask(ds.frame, config["holdout"]["fraction"], config["id_column"])
    train, hold = ds.frame[~mask], ds.frame[mask]
    src = config["_config_file"]
    if len(hold) == 0:
        raise ModelCIError(f"{src}: holdout.fraction: no row of {len(ds.frame)} landed in the hold-out set; add rows "
                           "or raise holdout.fraction")
    if len(train) < 2:
        raise ModelCIError(f"{src}: holdout.fraction: only {len(train)} training row(s) of {len(ds.frame)}; add rows "
                           "or lower holdout.fraction")
    if config["task"] == "classification":
        target = config["target"]
        total = ds.frame[target].value_counts()
        in_train = train[target].value_counts()
        if len(total) < 2:
            raise ModelCIError(f"{src}: target: column '{target}' has a single class ({total.index[0]!r}); a "
                               "classifier needs at least two classes")
        need = config["search"]["cv"] if config.get("search") else 1
        for label, n in total.items():
            t = int(in_train.get(label, 0))
            if n < 2 or t < need:
                req = f"at least {need} in the training part (search.cv)" if need > 1 else \
                    "at least 1 outside the hold-out set"
                raise ModelCIError(f"{src}: target: class {label!r} has too few rows to split ({int(n)} row(s), "
                                   f"{t} in the training part; each class needs 2 or more rows, {req}); add rows "
                                   "for that class or remove it")
    return train, hold, mask


def xy(config: dict[str, Any], frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Raw input columns (the serving signature, declared order) and the target."""
    return frame[feature_columns(config)].reset_index(drop=True), frame[config["target"]].reset_index(drop=True)


def load_holdout(config: dict[str, Any]) -> tuple[pd.DataFrame, pd.Series]:
    """(X, y) of the hold-out rows: the same rows for any model trained on this data."""
    ds = load_dataset(config)
    mask = holdout_mask(ds.frame, config["holdout"]["fraction"], config["id_column"])
    return xy(config, ds.frame[mask])
