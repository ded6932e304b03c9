"""Loading a model directory and turning request payloads into the DataFrame the model takes.

The model directory format is modelci's (see scripts/modelci/artifact.py): model.joblib, model.json,
optionally smoke.json. This module deliberately does not import the modelci package: the serving
image carries only app/ and its pinned runtime.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("modelci.serving")

MODEL_FILE = "model.joblib"
META_FILE = "model.json"
SMOKE_FILE = "smoke.json"

# V2 datatypes accepted for a numeric input; text/categorical inputs take BYTES only.
NUMERIC_DATATYPES = frozenset({"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64",
                               "UINT8", "UINT16", "UINT32", "UINT64"})
KNOWN_DATATYPES = NUMERIC_DATATYPES | {"BYTES", "BOOL"}


class ModelLoadError(Exception):
    """The model directory cannot be served (missing, altered, or it does not predict)."""


class BadRequest(Exception):
    """A client error: answered as {"error": message} with the given HTTP status."""

    def __init__(self, message: str, status: int = 400,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers  # extra response headers (Retry-After, Connection: close)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_json(path: Path, what: str) -> Any:
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read())
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: {what} not found; is MODELCI_MODEL_DIR a modelci model "
                             "directory?") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: {what} is not valid JSON ({exc}); rebuild the artifact") from None


def _output_datatype(values: Any) -> str:
    kind = np.asarray(values).dtype.kind
    if kind in "iu":
        return "INT64"
    if kind == "f":
        return "FP64"
    if kind == "b":
        return "BOOL"
    return "BYTES"


class Column:
    """One input of the model signature."""

    __slots__ = ("datatype", "kind", "name", "numeric")

    def __init__(self, name: str, kind: str, datatype: str) -> None:
        self.name = name
        self.kind = kind
        self.datatype = datatype
        self.numeric = datatype in NUMERIC_DATATYPES or datatype == "BOOL"


class Batch:
    """Decoded, validated input: the DataFrame plus per-column arrays for the drift metrics."""

    __slots__ = ("block", "checked", "frame", "numeric", "rows", "strings")

    def __init__(self, frame: Any, rows: int, numeric: dict[str, np.ndarray],
                 strings: dict[str, list[Any]], checked: bool = False, block: np.ndarray | None = None) -> None:
        self.block = block  # (columns x rows) float64 values of an all-numeric batch
        self.frame = frame
        self.rows = rows
        self.numeric = numeric
        self.strings = strings
        # True when the app has already established what scikit-learn's per-step finiteness check
        # would: no missing values and every number well inside float range.
        self.checked = checked


# JSON cannot carry NaN/Infinity (orjson rejects them), so a batch without nulls whose numbers are
# all below this magnitude cannot make a pipeline step produce inf/NaN by overflow.
_SAFE_MAGNITUDE = 1e100


class Model:
    """A verified, loaded model with its signature. Thread-safe for concurrent predictions."""

    def __init__(self, model_dir: str | os.PathLike[str], version: str | None = None) -> None:
        self.dir = Path(model_dir)
        meta = _read_json(self.dir / META_FILE, "model metadata (model.json)")
        if not isinstance(meta, dict):
            raise ModelLoadError(f"{self.dir / META_FILE}: expected a JSON object; rebuild the artifact")
        # model.json's contract, the same file modelci's CLI checks it with (app/model.schema.json)
        import jsonschema

        schema = _read_json(Path(__file__).with_name("model.schema.json"), "model.json schema")
        problem = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(meta))
        if problem is not None:
            where = ".".join(str(p) for p in problem.absolute_path) or "top level"
            raise ModelLoadError(f"{self.dir / META_FILE}: {where}: {problem.message}; rebuild the artifact "
                                 "with modelci train")
        self.meta = meta
        path = self.dir / MODEL_FILE
        if not path.is_file():
            raise ModelLoadError(f"{path}: model artifact missing; rebuild the image with a model directory")
        expected = meta.get("sha256")
        if not expected:
            raise ModelLoadError(f"{self.dir / META_FILE}: sha256: missing; the artifact cannot be verified, "
                                 "refusing to load it")
        actual = sha256_file(path)
        if actual != expected:
            raise ModelLoadError(f"{path}: sha256 {actual[:12]}… does not match model.json's "
                                 f"{str(expected)[:12]}…; the artifact was altered, refusing to load it")
        self.sha256 = actual
        self.name = str(meta.get("name") or "model")
        self.version = version or (str(meta["version"]) if meta.get("version") not in (None, "") else None)
        self.task = meta.get("task") or "classification"
        self.columns = self._signature(meta)
        self.names = [c.name for c in self.columns]
        self.by_name = {c.name: c for c in self.columns}
        # Fast path: every input is a numeric feature (numeric scalers/imputers/trees treat int and
        # float alike), so one float64 block makes the DataFrame. Otherwise each column keeps its
        # JSON-inferred type (int64, bool, str), exactly like the training's replay of smoke.json.
        self.numeric_only = all(c.numeric and c.kind == "numeric" for c in self.columns)
        import pandas as pd

        self._index = pd.Index(self.names)

        import joblib  # imported here: keeps `import app` cheap for tooling
        import sklearn

        self._config_context = sklearn.config_context

        try:
            self.estimator = joblib.load(path)
        except Exception as exc:  # noqa: BLE001 - any unpickling error means "cannot serve"
            raise ModelLoadError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc}); the serving "
                                 "runtime must match the training one (see app/requirements.txt)") from None
        if not hasattr(self.estimator, "predict"):
            raise ModelLoadError(f"{path}: the object has no predict() method")

        classes = meta.get("classes")
        if classes is None and hasattr(self.estimator, "classes_"):
            classes = list(np.asarray(self.estimator.classes_).tolist())
        self.classes = list(classes) if (self.task == "classification" and classes is not None) else None
        self.has_proba = self.task == "classification" and hasattr(self.estimator, "predict_proba")
        outputs = meta.get("outputs") or []
        declared = outputs[0].get("datatype") if outputs and isinstance(outputs[0], dict) else None
        if declared in KNOWN_DATATYPES:
            self.predict_datatype = declared
        elif self.task == "classification" and self.classes is not None:
            self.predict_datatype = _output_datatype(self.classes)
        else:
            self.predict_datatype = "FP64"

    @staticmethod
    def _signature(meta: dict[str, Any]) -> list[Column]:
        inputs = meta.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise ModelLoadError("model.json: inputs: missing or empty; the serving app needs the input "
                                 "signature, rebuild the artifact with modelci train")
        cols = []
        for i, spec in enumerate(inputs):
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise ModelLoadError(f"model.json: inputs[{i}]: expected {{\"name\", \"kind\", \"datatype\"}}")
            kind = spec.get("kind") or ("numeric" if spec.get("datatype") in NUMERIC_DATATYPES else "text")
            datatype = spec.get("datatype") or ("FP64" if kind == "numeric" else "BYTES")
            if datatype not in KNOWN_DATATYPES:
                raise ModelLoadError(f"model.json: inputs[{i}].datatype: unknown V2 datatype {datatype!r}")
            cols.append(Column(spec["name"], kind, datatype))
        return cols

    # ---------------------------------------------------------------- decoding
    def _numeric(self, col: Column, values: list[Any], where: str) -> np.ndarray:
        # Fast path for a few values: plain JSON numbers (bool is not a number here). Longer lists go
        # straight to numpy's type inference below, which checks them in C.
        ints = True
        for v in values if len(values) <= 16 else (None,):
            t = type(v)
            if t is float:
                ints = False
            elif t is not int:
                break
        else:
            if ints and col.datatype == "INT64":
                try:
                    return np.array(values, dtype=np.int64)
                except OverflowError:
                    pass
            try:
                return np.array(values, dtype=np.float64)
            except OverflowError:
                pass
        try:
            arr = np.asarray(values)
        except (ValueError, TypeError, OverflowError):
            arr = np.asarray(values, dtype=object)
        kind = arr.dtype.kind
        if arr.ndim != 1:
            raise BadRequest(f"{where}: expected a flat list of numbers for input '{col.name}'")
        if kind == "f":
            return arr.astype(np.float64, copy=False)
        if kind in "iu":
            return arr.astype(np.int64 if col.datatype == "INT64" else np.float64, copy=False)
        if kind == "O":
            out = np.empty(len(values), dtype=np.float64)
            for i, v in enumerate(values):
                if v is None:
                    out[i] = math.nan
                elif isinstance(v, (int, float)) and not isinstance(v, bool):
                    try:
                        out[i] = v
                    except OverflowError:
                        raise BadRequest(f"{where}: input '{col.name}': value {v} is out of range") from None
                else:
                    raise BadRequest(f"{where}: input '{col.name}' is numeric ({col.datatype}); "
                                     f"got {type(v).__name__} {v!r}")
            return out
        if kind == "b" and col.datatype in ("INT64", "BOOL"):
            return arr  # a boolean column (training declares bool columns INT64)
        got = "booleans" if kind == "b" else "strings" if kind in "US" else f"dtype {arr.dtype}"
        raise BadRequest(f"{where}: input '{col.name}' is numeric ({col.datatype}); got {got}")

    @staticmethod
    def _strings(col: Column, values: list[Any], where: str) -> list[Any]:
        for v in values:
            if v is not None and type(v) is not str:
                raise BadRequest(f"{where}: input '{col.name}' is {col.kind} (BYTES, strings); "
                                 f"got {type(v).__name__} {v!r}")
        return values

    def _frame(self, columns: dict[str, Any], rows: int) -> Batch:
        import pandas as pd

        numeric: dict[str, np.ndarray] = {}
        strings: dict[str, list[Any]] = {}
        for c in self.columns:
            if c.numeric:
                numeric[c.name] = columns[c.name]
            else:
                strings[c.name] = columns[c.name]
        if self.numeric_only:
            # One (columns x rows) float block; its transpose is the layout pandas keeps internally,
            # so the DataFrame wraps it without copying. A prebuilt column Index saves ~20us a call.
            block = np.empty((len(self.columns), rows), dtype=np.float64)
            for j, c in enumerate(self.columns):
                block[j] = numeric[c.name]
            frame = pd.DataFrame(block.T, columns=self._index, copy=False)
            checked = bool(np.abs(block).max() < _SAFE_MAGNITUDE)  # False for NaN
            return Batch(frame, rows, numeric, strings, checked, block)
        else:
            frame = pd.DataFrame({c.name: (numeric[c.name] if c.numeric
                                           else np.array(strings[c.name], dtype=object))
                                  for c in self.columns}, columns=self._index)
            checked = (all(bool(np.abs(a).max() < _SAFE_MAGNITUDE) for a in numeric.values())
                       and all(v is not None for vs in strings.values() for v in vs))
        return Batch(frame, rows, numeric, strings, checked)

    def decode_records(self, records: Any) -> Batch:
        """Plain JSON rows: [{"col": value, ...}, ...]. Missing or unknown columns are errors."""
        if not isinstance(records, list):
            raise BadRequest('body: expected a JSON list of records [{"column": value, ...}] or '
                             '{"records": [...]}')
        if not records:
            raise BadRequest("body: no records to predict")
        ncols = len(self.columns)
        for i, r in enumerate(records):
            if type(r) is not dict:
                raise BadRequest(f"records[{i}]: expected an object {{\"column\": value, ...}}, "
                                 f"got {type(r).__name__}")
            if len(r) != ncols or any(n not in r for n in self.names):
                missing = [n for n in self.names if n not in r]
                extra = [k for k in r if k not in self.by_name]
                parts = []
                if missing:
                    parts.append(f"missing column(s) {', '.join(map(repr, missing))}")
                if extra:
                    parts.append(f"unknown column(s) {', '.join(map(repr, map(str, extra)))}")
                raise BadRequest(f"records[{i}]: {'; '.join(parts)}; the model takes "
                                 f"{', '.join(self.names)}")
        cols: dict[str, Any] = {}
        for c in self.columns:
            values = [r[c.name] for r in records]
            cols[c.name] = (self._numeric(c, values, "records") if c.numeric
                            else self._strings(c, values, "records"))
        return self._frame(cols, len(records))

    def decode_v2(self, inputs: Any) -> Batch:
        """V2 inference request tensors: one per column, shape [batch] or [batch, 1]."""
        if not isinstance(inputs, list) or not inputs:
            raise BadRequest("inputs: expected a non-empty list of tensors "
                             '[{"name", "shape", "datatype", "data"}, ...], one per model input')
        given: dict[str, dict[str, Any]] = {}
        for i, t in enumerate(inputs):
            if type(t) is not dict:
                raise BadRequest(f"inputs[{i}]: expected a tensor object")
            name = t.get("name")
            if not isinstance(name, str):
                raise BadRequest(f"inputs[{i}].name: missing")
            if name not in self.by_name:
                raise BadRequest(f"inputs[{i}]: unknown input '{name}'; the model takes "
                                 f"{', '.join(self.names)}")
            if name in given:
                raise BadRequest(f"inputs[{i}]: input '{name}' given twice")
            given[name] = t
        missing = [n for n in self.names if n not in given]
        if missing:
            raise BadRequest(f"inputs: missing input(s) {', '.join(map(repr, missing))}; the model takes "
                             f"{', '.join(self.names)}")
        rows = -1
        cols: dict[str, Any] = {}
        for c in self.columns:
            t = given[c.name]
            where = f"input '{c.name}'"
            datatype = t.get("datatype")
            if c.numeric:
                if datatype not in NUMERIC_DATATYPES and not (
                        datatype == "BOOL" and c.datatype in ("INT64", "BOOL")):
                    raise BadRequest(f"{where}: datatype {datatype!r} does not match the model signature "
                                     f"({c.datatype}; any of FP32, FP64, INT32, INT64 is accepted)")
            elif datatype != "BYTES":
                raise BadRequest(f"{where}: datatype {datatype!r} does not match the model signature "
                                 f"(BYTES for {c.kind} inputs)")
            shape = t.get("shape")
            if (type(shape) is not list or not 1 <= len(shape) <= 2
                    or not all(type(d) is int and d >= 0 for d in shape)
                    or (len(shape) == 2 and shape[1] != 1)):
                raise BadRequest(f"{where}: shape {shape!r} is not supported; use [batch] or [batch, 1]")
            n = shape[0]
            if n == 0:
                raise BadRequest(f"{where}: empty batch")
            if rows == -1:
                rows = n
            elif n != rows:
                raise BadRequest(f"{where}: batch size {n} differs from the other inputs' {rows}")
            data = t.get("data")
            if type(data) is not list:
                raise BadRequest(f"{where}: data: expected a list")
            if data and type(data[0]) is list:
                if len(shape) != 2:
                    raise BadRequest(f"{where}: nested data needs shape [batch, 1], got {shape}")
                flat = []
                for row in data:
                    if type(row) is not list or len(row) != 1:
                        raise BadRequest(f"{where}: data does not match shape {shape}")
                    flat.append(row[0])
                data = flat
            if len(data) != n:
                raise BadRequest(f"{where}: shape {shape} needs {n} values, data has {len(data)}")
            cols[c.name] = self._numeric(c, data, where) if c.numeric else self._strings(c, data, where)
        return self._frame(cols, rows)

    # ---------------------------------------------------------------- predicting
    def predict(self, batch: Batch, proba: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        try:
            # Skip scikit-learn's repeated NaN/inf scans (~40 us per 1-row predict) only when the app
            # has already ruled them out; otherwise the model validates as usual (and may raise).
            with self._config_context(assume_finite=batch.checked):
                y = np.asarray(self.estimator.predict(batch.frame))
                p = np.asarray(self.estimator.predict_proba(batch.frame)) if proba else None
        except Exception as exc:  # noqa: BLE001 - a bad value must be a 4xx, never a crash
            msg = str(exc).splitlines()[0] if str(exc) else ""
            raise BadRequest(f"the model could not predict on this input: {type(exc).__name__}: {msg}",
                             422) from None
        return y, p

    def warmup(self) -> None:
        """One prediction before becoming ready: smoke.json's first input, else a synthetic row."""
        smoke_path = self.dir / SMOKE_FILE
        if smoke_path.is_file():
            smoke = _read_json(smoke_path, "smoke test data (smoke.json)")
            rows = smoke.get("inputs") if isinstance(smoke, dict) else None
            if rows:
                row = rows[0]
                if not isinstance(row, dict):
                    raise ModelLoadError(f"{smoke_path}: inputs[0]: expected an object")
                row = {k: v for k, v in row.items() if k in self.by_name}
                try:
                    batch = self.decode_records([row])
                    self.predict(batch, proba=self.has_proba)
                except BadRequest as exc:
                    raise ModelLoadError(f"{smoke_path}: warm-up prediction on inputs[0] failed: "
                                         f"{exc.message}") from None
                return
        stats = self.meta.get("feature_stats") or {}
        row = {}
        for c in self.columns:
            st = stats.get(c.name) if isinstance(stats, dict) else None
            if c.numeric:
                v = st.get("mean") if isinstance(st, dict) else None
                row[c.name] = float(v) if isinstance(v, (int, float)) else 0.0
            else:
                row[c.name] = ""
        try:
            self.predict(self.decode_records([row]), proba=self.has_proba)
        except BadRequest as exc:
            log.warning("warm-up on a synthetic row failed (%s); no smoke.json to warm up with, "
                        "continuing", exc.message)
