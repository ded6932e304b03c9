"""The run record (out/run.json), library versions, lineage, the reuse key and the model cache.

run.json (schema_version 1):
  run_id, schema_version, status, trained_at, commit, pipeline_id, job_id, config_file, config_sha256,
  config (resolved, with defaults), data {sha256, files: [{path, sha256, bytes, rows}]},
  training_inputs [{path, kind, sha256}] (entry point module, stop-word file), rows {total, train, holdout},
  seed, seeded_params, best_params, search {...}, metrics {...}, per_class, confusion_matrix,
  feature_stats, target_stats, model {name, major, sha256, task, classes, inputs, outputs},
  libraries {python, modelci, scikit-learn, numpy, pandas, scipy, joblib}, platform, durations {...},
  reuse_key, warnings.

Reuse key: sha256 over a canonical JSON of the data files' sha256, the resolved config without the
sections that do not change the model (gate, monitor), the training code (modelci version and the
sha256 of the entry point module and of the stop-word file, if any) and the library versions.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from . import __version__, artifact, log
from .config import public

SCHEMA_VERSION = 1
NOT_IN_KEY = ("gate", "monitor")
LIBRARIES = ("scikit-learn", "numpy", "pandas", "scipy", "joblib")


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "modelci": __version__}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def platform_info() -> dict[str, str]:
    return {"system": platform.system(), "machine": platform.machine(), "python_impl": platform.python_implementation()}


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def current_commit(cwd: str | os.PathLike[str] | None = None) -> str | None:
    sha = os.environ.get("CI_COMMIT_SHA")
    if sha:
        return sha
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    out = res.stdout.strip()
    return out if res.returncode == 0 and len(out) >= 40 else None


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def key_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in public(config).items() if k not in NOT_IN_KEY}


def reuse_key(config: dict[str, Any], data_files: list[dict[str, Any]], training_inputs: list[dict[str, Any]],
              libraries: dict[str, str]) -> str:
    doc = {
        "data": [{"path": f["path"], "sha256": f["sha256"]} for f in data_files],
        "config": key_config(config),
        "code": {"modelci": libraries.get("modelci"),
                 "inputs": [{"path": t["path"], "kind": t["kind"], "sha256": t["sha256"]} for t in training_inputs]},
        "libraries": libraries,
    }
    return hashlib.sha256(canonical_json(doc)).hexdigest()


# ---------------------------------------------------------------------------------------------- cache
def cache_entry(cache_dir: str | os.PathLike[str], key: str) -> Path | None:
    """The cached output directory for `key` if it is complete (model/, run.json, metrics.json)."""
    entry = Path(cache_dir) / key
    if not entry.is_dir():
        return None
    problem = artifact.training_output_problem(entry, key)  # verified whole, else a miss (replaced)
    if problem:
        log.warn(f"cache entry {entry} is unusable, not whole ({problem}); treating it as a miss and training again")
        return None
    return entry


def cache_store(cache_dir: str | os.PathLike[str], key: str, out_dir: str | os.PathLike[str]) -> Path:
    """Copy a training output directory into the cache (atomically: temp dir, then rename)."""
    final = Path(cache_dir) / key
    with artifact.atomic_dir(final) as tmp:
        for name in ("model", "run.json", "metrics.json"):
            src = Path(out_dir) / name
            if src.is_dir():
                shutil.copytree(src, tmp / name)
            else:
                shutil.copy2(src, tmp / name)
    return final
