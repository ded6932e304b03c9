"""The reproduce step: retrain from a run record and check that the metrics come out the same.

Uses the resolved config stored in the record (not today's config file), checks every data file and
training input (entry point module, stop-word file) against the sha256 recorded, retrains through the
train step, and compares each hold-out metric and the best hyperparameters. Exit 0 on a match, 1 on a
mismatch or when an input changed.

Comparison: exact (tolerance 0) when the run was deterministic (every random_state seeded, no custom
entry point) and the library versions are the recorded ones; otherwise |recorded - reproduced| <= 0.01
for every metric (an explicit tolerance overrides both).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .. import log
from ..artifact import read_json, sha256_file
from ..config import display_path, from_record
from ..errors import ModelCIError
from ..runrecord import library_versions
from ..settings.reproduce import ReproduceSettings
from . import Result
from .train import train_to, training_inputs

DEFAULT_TOLERANCE = 0.01


def _base_dir(record: dict[str, Any], s: ReproduceSettings, rr: Path) -> Path:
    if s.base_dir:
        return s.base_dir
    cfg_file = record.get("config_file")
    if not isinstance(cfg_file, str) or not cfg_file:
        raise ModelCIError(f"{rr}: config_file: missing from the run record; pass --base-dir (the directory "
                           "holding the model config)")
    return Path(cfg_file).parent if Path(cfg_file).parent != Path("") else Path(".")


def check_inputs(record: dict[str, Any], config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every data file / training input whose bytes differ from the record."""
    base = Path(config["_base_dir"])
    changed = []
    for f in (record.get("data") or {}).get("files") or []:
        path = base / f["path"]
        actual = sha256_file(path) if path.is_file() else None
        if actual != f.get("sha256"):
            changed.append({"kind": "data", "path": display_path(path), "recorded_sha256": f.get("sha256"),
                            "actual_sha256": actual})
    recorded_inputs = {(t["kind"], t["path"]): t for t in record.get("training_inputs") or []}
    try:
        current = {(t["kind"], t["path"]): t for t in training_inputs(config)}
    except ModelCIError:
        current = {}
    for k, t in recorded_inputs.items():
        now = current.get(k)
        actual = now["sha256"] if now else None
        if actual != t.get("sha256"):
            changed.append({"kind": t["kind"], "path": display_path(base / t["path"]),
                            "recorded_sha256": t.get("sha256"), "actual_sha256": actual})
    return changed


def compare(recorded: dict[str, Any], reproduced: dict[str, Any], tolerance: float) -> tuple[bool, dict[str, Any]]:
    out: dict[str, Any] = {}
    ok = True
    for name in sorted(set(recorded) | set(reproduced)):
        a, b = recorded.get(name), reproduced.get(name)
        if a is None or b is None:
            same = a is None and b is None
            diff = None
        else:
            diff = abs(float(a) - float(b))
            same = diff <= tolerance
        ok = ok and same
        out[name] = {"recorded": a, "reproduced": b, "diff": diff, "match": same}
    return ok, out


def run(s: ReproduceSettings) -> Result:
    rr = s.run_record
    record = read_json(rr, "run record")
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict) or "metrics" not in record:
        raise ModelCIError(f"{rr}: not a modelci run record (no config/metrics); pass the run.json written by "
                           "`modelci train`")
    base = _base_dir(record, s, rr)
    if not base.is_dir():
        raise ModelCIError(f"{rr}: config_file: directory {base} (of the recorded config file "
                           f"{record.get('config_file')}) not found here; run from the repository root or pass "
                           "--base-dir")
    config = from_record(record["config"], source=f"{rr}: config", base_dir=base)

    changed = check_inputs(record, config)
    if changed:
        first = changed[0]
        more = f"; {len(changed) - 1} more changed" if len(changed) > 1 else ""
        return Result({"match": False, "reason": "inputs_changed", "run_id": record.get("run_id"),
                       "changed": changed}, exit_code=1,
                      error=f"{first['path']}: {first['kind']} file differs from the run record "
                            f"(sha256 {str(first['actual_sha256'])[:12]} now, "
                            f"{str(first['recorded_sha256'])[:12]} recorded{more}); check out the commit the "
                            f"run was trained from ({record.get('commit') or 'unknown commit'}) to reproduce it")

    libs_now = library_versions()
    libs_then = record.get("libraries") or {}
    libs_differ = {k: {"recorded": libs_then.get(k), "now": v} for k, v in libs_now.items()
                   if libs_then.get(k) != v}
    deterministic = bool((record.get("model") or {}).get("deterministic", False))
    if s.tolerance is not None:
        tolerance = float(s.tolerance)
    else:
        tolerance = 0.0 if deterministic and not libs_differ else DEFAULT_TOLERANCE
    if libs_differ:
        log.warn("library versions differ from the run record: " + ", ".join(
            f"{k} {v['recorded']} -> {v['now']}" for k, v in libs_differ.items()))

    tmp = None
    out = s.out
    if out is None:
        tmp = Path(tempfile.mkdtemp(prefix="modelci-reproduce-"))
        out = tmp / "out"
    try:
        with log.section("modelci_reproduce", f"Retraining run {record.get('run_id')}", collapsed=False):
            summary = train_to(config, out, pipeline_id=s.pipeline_id, job_id=s.job_id)
        new_record = json.loads((out / "run.json").read_text())
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    metrics_ok, metrics = compare(record.get("metrics") or {}, new_record.get("metrics") or {}, tolerance)
    params_ok = (record.get("best_params") or None) == (new_record.get("best_params") or None)
    match = metrics_ok and params_ok
    result = {
        "match": match, "run_id": record.get("run_id"), "reproduced_run_id": summary["run_id"],
        "exact": tolerance == 0.0, "tolerance": tolerance, "deterministic": deterministic,
        "metrics": metrics,
        "best_params": {"recorded": record.get("best_params"), "reproduced": new_record.get("best_params"),
                        "match": params_ok},
        "model_sha256": {"recorded": (record.get("model") or {}).get("sha256"),
                         "reproduced": new_record["model"]["sha256"],
                         "match": (record.get("model") or {}).get("sha256") == new_record["model"]["sha256"]},
        "data_sha256": new_record["data"]["sha256"], "libraries_differ": libs_differ,
        "out": str(s.out) if s.out else None,
    }
    if match:
        log.info(f"reproduced run {record.get('run_id')}: metrics match "
                 f"({'exactly' if tolerance == 0 else f'within {tolerance}'})")
        return Result(result)
    bad = [k for k, v in metrics.items() if not v["match"]] + ([] if params_ok else ["best_params"])
    log.warn(f"run {record.get('run_id')} did not reproduce: {', '.join(bad)} differ "
             f"(tolerance {tolerance}); see the JSON on stdout")
    return Result(result, exit_code=1)
