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


# Names modelci writes into an output directory (model dir, training output, cache entry, registry pull).
# A directory holding anything else is someone else's: never replaced (docs/design.md#local-runs).
OUTPUT_NAMES = frozenset({MODEL_FILE, META_FILE, "smoke.json", "run.json", "verdict.json", "metrics.json",
                          "model"})


def refuse_unsafe_out(path: str | os.PathLike[str], what: str = "--out") -> None:
    """'.', '/', the home directory and any directory holding the current one are never outputs."""
    p = Path(path)
    resolved = p.resolve()
    cwd = Path.cwd().resolve()
    home = Path.home().resolve()
    if resolved == Path(resolved.anchor) or resolved == home or resolved == cwd or resolved in cwd.parents:
        name = ("the root directory" if resolved == Path(resolved.anchor) else
                "the home directory" if resolved == home else "the current directory or one holding it")
        raise ModelCIError(f"{what} {path}: {name} is never replaced by an output; give a directory of its "
                           "own, e.g. out/model")


def check_replaceable(path: str | os.PathLike[str], what: str = "--out") -> None:
    """Refuse to delete `path` unless it is absent, empty, or holds only what modelci writes."""
    p = Path(path)
    if p.is_symlink() or (p.exists() and not p.is_dir()):
        raise ModelCIError(f"{what} {path}: exists and is not a directory modelci made (a file or a link); "
                           "remove it or give another path")
    if not p.exists():
        return
    for child in p.iterdir():
        if child.name not in OUTPUT_NAMES or child.is_symlink() or (child.is_dir() and child.name != "model"):
            raise ModelCIError(f"{what} {path}: a non-empty directory modelci did not create (it holds "
                               f"{child.name!r}); refusing to replace it, give a new or empty directory")
        if child.is_dir():
            check_replaceable(child, what)


def refuse_if_holds(path: str | os.PathLike[str], inputs: list[str | os.PathLike[str]], what: str = "--out") -> None:
    """Refuse to replace `path` when it holds one of this run's inputs (the config, its data)."""
    target = Path(path).resolve()
    for item in inputs:
        if Path(item).resolve().is_relative_to(target):
            raise ModelCIError(f"{what} {Path(path).parent}: replacing {path} would delete {item}, an input of "
                               "this run; give --out a directory of its own, e.g. out")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory in a temporary sibling and rename it over `final` only when the block
    succeeds; on any error `final` is left as it was and the temporary directory is removed.
    `final` must be absent, empty or modelci's own (check_replaceable): nothing else is deleted."""
    final = Path(final)
    refuse_unsafe_out(final)
    check_replaceable(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name[:24]}."))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700: CI artifacts and the app user must read it
        check_replaceable(final)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def training_output_problem(entry: str | os.PathLike[str], key: str | None = None) -> str | None:
    """Why a training output directory (or cache entry: model/, run.json, metrics.json) is not whole,
    or None. Every file is parsed and cross-checked with the run record; model.joblib is hashed."""
    entry = Path(entry)
    try:
        record = json.loads((entry / "run.json").read_text())
        meta = json.loads((entry / "model" / META_FILE).read_text())
        metrics = json.loads((entry / "metrics.json").read_text())
        smoke = json.loads((entry / "model" / "smoke.json").read_text())
    except FileNotFoundError as exc:
        return f"{Path(exc.filename).relative_to(entry) if exc.filename else 'a file'} is missing"
    except (OSError, ValueError) as exc:
        return f"a file does not parse ({exc.__class__.__name__}: {str(exc)[:80]})"
    if not all(isinstance(x, dict) for x in (record, meta, metrics, smoke)):
        return "a file is not a JSON object"
    model = entry / "model" / MODEL_FILE
    if not model.is_file():
        return "model/model.joblib is missing"
    sha = sha256_file(model)
    if not (sha == meta.get("sha256") == (record.get("model") or {}).get("sha256")):
        return "model/model.joblib does not match the sha256 in model.json and run.json"
    if key is not None and record.get("reuse_key") != key:
        return f"run.json is for reuse key {str(record.get('reuse_key'))[:12]}, not {key[:12]}"
    if meta.get("run_id") != record.get("run_id"):
        return "model.json and run.json name different runs"
    if json.dumps(metrics.get("metrics"), sort_keys=True) != json.dumps(record.get("metrics"), sort_keys=True):
        return "metrics.json disagrees with run.json"
    if not isinstance(smoke.get("inputs"), list) or not isinstance(smoke.get("expected"), list) \
            or len(smoke["inputs"]) != len(smoke["expected"]):
        return "model/smoke.json is not a smoke test (inputs and expected of one length)"
    return None


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
