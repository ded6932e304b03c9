"""The train step: train the model described by the config (or reuse a cached one) and write OUT.

Writes OUT/model/ (model.joblib, model.json, smoke.json), OUT/run.json and OUT/metrics.json. Everything
is written to a temporary directory next to OUT first and swapped in by renames at the end; if a
rename fails the previous outputs are put back, so a failed run leaves OUT's outputs as they were.

Reuse: with a cache directory, a model trained earlier from the same reuse key (data files, resolved
config, training code, library versions; see modelci.runrecord) is copied to OUT instead of training
again; `force` trains anyway.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import artifact, log
from ..artifact import read_json, save_model, sha256_file, verify_model, write_json_atomic
from ..config import display_path, load_config, public
from ..data import fingerprint, load_dataset
from ..errors import ModelCIError
from ..metrics import to_native
from ..runrecord import (
    SCHEMA_VERSION,
    cache_entry,
    cache_store,
    current_commit,
    library_versions,
    new_run_id,
    platform_info,
    reuse_key,
)
from ..schemas import RUN_FILE, SMOKE_FILE
from ..settings import env
from ..settings.train import TrainSettings
from ..training import entry_point_file, train
from . import Result

OUTPUTS = ("model", "run.json", "metrics.json")


def run(settings: TrainSettings) -> Result:
    config = load_config(settings.config)
    force = settings.force or api_retrain()
    return Result(train_to(config, settings.out, cache_dir=settings.cache_dir, force=force,
                           pipeline_id=settings.pipeline_id, job_id=settings.job_id))


def api_retrain() -> bool:
    """A pipeline created through the API on the default branch is a retrain (the drift monitor starts
    one without variables, docs/monitoring.md): it must not reuse a cached model, like FORCE_RETRAIN."""
    source, branch = env("CI_PIPELINE_SOURCE"), env("CI_COMMIT_BRANCH")
    if source == "api" and branch and branch == env("CI_DEFAULT_BRANCH"):
        log.info(f"an API pipeline on the default branch {branch}: a retrain, the cache is not reused")
        return True
    return False


# ---------------------------------------------------------------------------------------------- helpers
def training_inputs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Files other than the data that change the model: the entry point module, the stop-word file."""
    base = Path(config["_base_dir"])
    items = []
    ep = entry_point_file(config)
    if ep is not None:
        items.append({"kind": "entry_point", "path": _rel(ep, base), "sha256": sha256_file(ep)})
    elif config.get("entry_point"):
        mod = config["entry_point"].split(":")[0]
        raise ModelCIError(f"{config['_config_file']}: entry_point: module '{mod}' not found in "
                           f"{display_path(base)}; put {mod.replace('.', '/')}.py next to the config file")
    sw = config["preprocessing"]["text"]["stop_words"]
    if config["features"]["text"] and isinstance(sw, str) and sw != "english":
        items.append({"kind": "stop_words", "path": sw, "sha256": sha256_file(base / sw)})
    return items


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base))
    except ValueError:
        return str(path)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ModelCIError(f"{out}: --out exists and is not a directory; pass a directory path")
    artifact.refuse_unsafe_out(out)


def _tmp_dir(out: Path) -> Path:
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.tmp-"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _normal_permissions(root: Path) -> None:
    """Temp files/dirs are created 0600/0700; outputs get the usual 0644/0755 (minus the umask), so that
    CI artifacts and the serving image's non-root user can read them."""
    mask = _umask()
    os.chmod(root, 0o755 & ~mask)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755 & ~mask)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644 & ~mask)


def publish(tmp: Path, out: Path) -> None:
    """Move a finished output directory into place: OUT itself when it does not exist, else each output
    by rename, the previous ones parked in `tmp` and put back if a rename fails (other files in OUT,
    such as out/gate, are left alone)."""
    _normal_permissions(tmp)
    if not out.exists():
        os.replace(tmp, out)
        return
    old = tmp / ".previous"
    old.mkdir()
    parked: list[str] = []
    placed: list[str] = []
    try:
        for name in OUTPUTS:
            if (out / name).exists() or (out / name).is_symlink():
                os.replace(out / name, old / name)
                parked.append(name)
        for name in OUTPUTS:
            os.replace(tmp / name, out / name)
            placed.append(name)
    except BaseException:
        for name in placed:
            os.replace(out / name, tmp / name)
        for name in parked:
            os.replace(old / name, out / name)
        raise
    shutil.rmtree(tmp, ignore_errors=True)


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------------------------------------- main
def train_to(config: dict[str, Any], out: Path, cache_dir: str | None = None, force: bool = False,
             quiet_cache: bool = False, pipeline_id: str | None = None,
             job_id: str | None = None) -> dict[str, Any]:
    """Train (or reuse) and write OUT. Returns the JSON summary."""
    t0 = time.perf_counter()
    out = Path(out)
    _check_out(out)
    artifact.refuse_if_holds(out / "model", [config["_config_file"]])
    libraries = library_versions()
    aux = training_inputs(config)

    if cache_dir:
        files, _ = fingerprint(config)
        key = reuse_key(config, files, aux, libraries)
        entry = cache_entry(cache_dir, key)
        if entry is not None and force:
            log.info(f"FORCE_RETRAIN/--force set: not reusing the cached model for key {key[:12]}")
        elif entry is not None:
            try:
                verify_model(entry / "model")
                read_json(entry / RUN_FILE, "run record (run.json)", kind="run")
                read_json(entry / "model" / SMOKE_FILE, "smoke test (smoke.json)", kind="smoke")
            except ModelCIError as exc:
                log.warn(f"cached model for key {key[:12]} is unusable ({exc}); training again")
            else:
                log.info(f"reusing model for key {key} from {entry}")
                tmp = _tmp_dir(out)
                try:
                    for name in OUTPUTS:
                        src = entry / name
                        shutil.copytree(src, tmp / name) if src.is_dir() else shutil.copy2(src, tmp / name)
                    publish(tmp, out)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                record = json.loads((out / "run.json").read_text())
                return _summary(record, out, reused=True, duration=time.perf_counter() - t0)
        elif not quiet_cache:
            log.info(f"no cached model for key {key[:12]}; training")

    tmp = _tmp_dir(out)
    try:
        record = _train_into(config, tmp, libraries, aux, t0, pipeline_id, job_id)
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if cache_dir:
        try:
            cache_store(cache_dir, record["reuse_key"], out)
            log.info(f"stored model in cache {cache_dir} (key {record['reuse_key'][:12]})")
        except OSError as exc:
            log.warn(f"could not store the model in the cache {cache_dir}: {exc}")
    return _summary(record, out, reused=False, duration=time.perf_counter() - t0)


def _summary(record: dict[str, Any], out: Path, reused: bool, duration: float) -> dict[str, Any]:
    return {
        "status": "reused" if reused else "trained", "reused": reused, "run_id": record["run_id"],
        "reuse_key": record["reuse_key"], "out": str(out), "model_dir": str(out / "model"),
        "model_sha256": record["model"]["sha256"], "data_sha256": record["data"]["sha256"],
        "commit": record["commit"], "metrics": record["metrics"], "best_params": record["best_params"],
        "rows": record["rows"], "duration_s": round(duration, 3),
    }


def _train_into(config: dict[str, Any], tmp: Path, libraries: dict[str, str], aux: list[dict[str, Any]],
                t0: float, pipeline_id: str | None, job_id: str | None) -> dict[str, Any]:
    run_id = new_run_id()
    log.info(f"run {run_id}: training '{config['model']['name']}' from {config['_config_file']}")
    t = time.perf_counter()
    with log.section("modelci_data", "Loading and checking the data"):
        ds = load_dataset(config)
        for f in ds.files:
            log.info(f"{f['display']}: {f['rows']} rows, {f['bytes']} bytes, sha256 {f['sha256'][:12]}")
    load_s = time.perf_counter() - t
    files = [{k: f[k] for k in ("path", "sha256", "bytes", "rows")} for f in ds.files]
    key = reuse_key(config, files, aux, libraries)

    result = train(config, ds)

    t = time.perf_counter()
    commit = current_commit(config["_base_dir"])
    trained_at = utc_now()
    metrics_doc = {k: result.metrics[k] for k in ("metrics", "per_class", "confusion_matrix", "n")
                   if k in result.metrics}
    meta = {
        "name": config["model"]["name"], "version": None, "major": config["model"]["major"],
        "task": config["task"], "target": config["target"], "inputs": result.inputs, "outputs": result.outputs,
        "classes": result.classes, "run_id": run_id, "commit": commit, "data_sha256": ds.sha256,
        "metrics": result.metrics["metrics"], "feature_stats": result.feature_stats, "trained_at": trained_at,
        "pipeline_id": pipeline_id, "reuse_key": key, "libraries": libraries,
    }
    with log.section("modelci_save", "Saving the model"):
        meta = save_model(tmp / "model", result.model, meta)
        write_json_atomic(tmp / "model" / SMOKE_FILE, result.smoke, kind="smoke")
        write_json_atomic(tmp / "metrics.json", metrics_doc)
        log.info(f"model sha256 {meta['sha256']}")
    save_s = time.perf_counter() - t

    durations = {"load": load_s, **result.durations, "save": save_s, "total": time.perf_counter() - t0}
    record = {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "status": "trained", "trained_at": trained_at,
        "commit": commit, "pipeline_id": pipeline_id, "job_id": job_id,
        "config_file": config["_config_file"],
        "config_sha256": _config_sha(config),
        "config": public(config),
        "data": {"sha256": ds.sha256, "files": files},
        "training_inputs": aux,
        "rows": result.rows, "seed": config["seed"], "seeded_params": result.seeded,
        "best_params": result.best_params, "search": result.search,
        "metrics": result.metrics["metrics"], "per_class": result.metrics.get("per_class"),
        "confusion_matrix": result.metrics.get("confusion_matrix"),
        "feature_stats": result.feature_stats, "target_stats": result.target_stats,
        "model": {"name": config["model"]["name"], "major": config["model"]["major"], "sha256": meta["sha256"],
                  "task": config["task"], "target": config["target"], "classes": result.classes,
                  "inputs": result.inputs, "outputs": result.outputs,
                  "estimator": config["entry_point"] or config["estimator"]["class"],
                  # seeded built-in pipelines are bit-for-bit repeatable; user code may not be
                  "deterministic": not config.get("entry_point")},
        "libraries": libraries, "platform": platform_info(),
        "durations": {k: round(v, 4) for k, v in durations.items()},
        # the record of the run that trained the model (a reused copy keeps it byte for byte)
        "reuse_key": key, "reused": False, "warnings": result.warnings,
    }
    write_json_atomic(tmp / RUN_FILE, to_native(record), kind="run")
    return record


def _config_sha(config: dict[str, Any]) -> str | None:
    path = Path(config["_config_file"])
    if not path.is_absolute():
        path = Path.cwd() / path
    try:
        return sha256_file(path)
    except OSError:
        return None
