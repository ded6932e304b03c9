"""The model artifact directory: the one format every step (train, gate, build, serve) agrees on.

A model directory holds:
  model.joblib  the fitted scikit-learn estimator/pipeline; it takes a pandas DataFrame of RAW input
                columns (all preprocessing lives inside it) and returns predictions.
  model.json    metadata: {"name", "version", "sha256" (of model.joblib), "task", "target",
                "inputs": [{"name", "kind": numeric|categorical|text, "datatype": FP64|INT64|BYTES}],
                "outputs": [{"name": "predict", "datatype"}], "classes": [...] (classification),
                "run_id", "commit", "data_sha256", "metrics": {...}, "feature_stats": {...}}
Loading always verifies model.joblib against the recorded sha256 first.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import schemas
from .errors import ModelCIError
from .schemas import META_FILE, MODEL_FILE

__all__ = ["META_FILE", "MODEL_FILE"]


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: str | os.PathLike[str], data: Any, kind: str | None = None) -> None:
    """Write JSON so that readers never see a half-written file; with `kind`, only a document valid
    against scripts/modelci/schemas/<kind>.schema.json is written."""
    if kind is not None:
        schemas.validate(kind, json.loads(json.dumps(data, default=str)), str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600: artifacts must be readable by CI and the app user
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: str | os.PathLike[str], what: str = "file", kind: str | None = None) -> Any:
    """A JSON file; with `kind`, checked against scripts/modelci/schemas/<kind>.schema.json."""
    try:
        with open(path) as fh:
            doc = json.load(fh)
        if kind is not None:
            schemas.validate(kind, doc, str(path))
        return doc
    except FileNotFoundError:
        raise ModelCIError(f"{path}: {what} not found; run the step that produces it first") from None
    except json.JSONDecodeError as exc:
        raise ModelCIError(f"{path}: {what} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                           "regenerate it") from None


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory in a temporary sibling and rename it over `final` only when the block
    succeeds; on any error `final` is left as it was and the temporary directory is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name[:24]}."))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700: CI artifacts and the app user must read it
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_model(model_dir: str | os.PathLike[str], estimator: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """Save estimator + metadata atomically (write to a temp dir, then rename). Returns the metadata."""
    import joblib

    with atomic_dir(model_dir) as tmp:
        joblib.dump(estimator, tmp / MODEL_FILE, compress=3)
        os.chmod(tmp / MODEL_FILE, 0o644)
        meta = dict(meta)
        meta["sha256"] = sha256_file(tmp / MODEL_FILE)
        write_json_atomic(tmp / META_FILE, meta, kind="model")
    return meta


def read_meta(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    return read_json(Path(model_dir) / META_FILE, "model metadata (model.json)", kind="model")


def verify_model(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Check model.joblib against the sha256 recorded in model.json; return the metadata."""
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    path = model_dir / MODEL_FILE
    if not path.exists():
        raise ModelCIError(f"{path}: model artifact missing; rerun training or fetch the model again")
    actual = sha256_file(path)
    if actual != meta.get("sha256"):
        raise ModelCIError(f"{path}: sha256 {actual[:12]}… does not match model.json's "
                           f"{str(meta.get('sha256'))[:12]}…; the artifact was altered, refusing to load it")
    return meta


def load_model(model_dir: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """Verify, then load. Returns (estimator, metadata)."""
    import joblib

    meta = verify_model(model_dir)
    return joblib.load(Path(model_dir) / MODEL_FILE), meta
