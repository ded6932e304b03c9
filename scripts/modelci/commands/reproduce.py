"""`modelci reproduce`: retrain from a run record and check that the metrics come out the same.

    modelci reproduce --run-record out/run.json [--out DIR] [--base-dir DIR] [--tolerance X]

Uses the resolved config stored in the record (not today's config file), checks every data file and
training input (entry point module, stop-word file) against the sha256 recorded, retrains, and compares
each hold-out metric and the best hyperparameters. Prints one JSON document {"match": bool, ...};
exit 0 on a match, 1 on a mismatch or when an input changed. The model artifact is not needed.

Comparison: exact (tolerance 0) when the run was deterministic (every random_state seeded, no custom
entry point) and the library versions are the recorded ones; otherwise |recorded - reproduced| <= 0.01
for every metric (--tolerance overrides both).
"""
from __future__ import annotations

import argparse
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
from .train import train_to, training_inputs

DEFAULT_TOLERANCE = 0.01


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("reproduce", help="retrain from a run record (run.json) and check the metrics match",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--run-record", default=None, help="run record written by `modelci train` (default OUT/run.json, "
                                                      "OUT from MODELCI_OUT or 'out')")
    p.add_argument("--out", help="write the retrained model, run record and metrics here (default: a temporary "
                                 "directory, removed afterwards)")
    p.add_argument("--base-dir", help="directory the recorded config's paths are relative to (default: the "
                                      "directory of the recorded config_file, from the current directory)")
    p.add_argument("--tolerance", type=float, default=None,
                   help=f"allowed absolute metric difference (default 0 for deterministic runs with the same "
                        f"library versions, else {DEFAULT_TOLERANCE})")
    p.set_defaults(func=run)


def _base_dir(record: dict[str, Any], args: argparse.Namespace, rr: Path) -> Path:
    if args.base_dir:
        return Path(args.base_dir)
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


def run(args: argparse.Namespace) -> int:
    rr = Path(args.run_record or Path(log.env("MODELCI_OUT", "out") or "out") / "run.json")
    record = read_json(rr, "run record")
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict) or "metrics" not in record:
        raise ModelCIError(f"{rr}: not a modelci run record (no config/metrics); pass the run.json written by "
                           "`modelci train`")
    base = _base_dir(record, args, rr)
    if not base.is_dir():
        raise ModelCIError(f"{rr}: config_file: directory {base} (of the recorded config file "
                           f"{record.get('config_file')}) not found here; run from the repository root or pass "
                           "--base-dir")
    config = from_record(record["config"], source=f"{rr}: config", base_dir=base)

    changed = check_inputs(record, config)
    if changed:
        result = {"match": False, "reason": "inputs_changed", "run_id": record.get("run_id"), "changed": changed}
        print(json.dumps(result, indent=2, sort_keys=True))
        first = changed[0]
        raise ModelCIError(f"{first['path']}: {first['kind']} file differs from the run record "
                           f"(sha256 {str(first['actual_sha256'])[:12]} now, {str(first['recorded_sha256'])[:12]} "
                           f"recorded{'; ' + str(len(changed) - 1) + ' more changed' if len(changed) > 1 else ''}); "
                           "check out the commit the run was trained from "
                           f"({record.get('commit') or 'unknown commit'}) to reproduce it")

    libs_now = library_versions()
    libs_then = record.get("libraries") or {}
    libs_differ = {k: {"recorded": libs_then.get(k), "now": v} for k, v in libs_now.items()
                   if libs_then.get(k) != v}
    deterministic = bool((record.get("model") or {}).get("deterministic", False))
    if args.tolerance is not None:
        tolerance = float(args.tolerance)
    else:
        tolerance = 0.0 if deterministic and not libs_differ else DEFAULT_TOLERANCE
    if libs_differ:
        log.warn("library versions differ from the run record: " + ", ".join(
            f"{k} {v['recorded']} -> {v['now']}" for k, v in libs_differ.items()))

    tmp = None
    out = Path(args.out) if args.out else None
    if out is None:
        tmp = Path(tempfile.mkdtemp(prefix="modelci-reproduce-"))
        out = tmp / "out"
    try:
        with log.section("modelci_reproduce", f"Retraining run {record.get('run_id')}", collapsed=False):
            summary = train_to(config, out)
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
        "out": str(args.out) if args.out else None,
    }
    print(json.dumps(result, indent=2, sort_keys=True))
    if match:
        log.info(f"reproduced run {record.get('run_id')}: metrics match "
                 f"({'exactly' if tolerance == 0 else f'within {tolerance}'})")
        return 0
    bad = [k for k, v in metrics.items() if not v["match"]] + ([] if params_ok else ["best_params"])
    log.warn(f"run {record.get('run_id')} did not reproduce: {', '.join(bad)} differ "
             f"(tolerance {tolerance}); see the JSON on stdout")
    return 1
