"""`modelci publish`: training runs to GitLab's model experiments, new models to its Model Registry.

The one job that holds the GitLab write token (environment `modelci/publish`) and loads no model: it
reads JSON and hashes files, never unpickles (docs/model-registry.md). It runs after the gate (also
when the gate rejected, so the run records why) and, on the default branch, after the build:
  - every training of this pipeline becomes one run of the experiment `[model]<name>`: resolved
    params, metrics, the data's sha256, the commit, `gitlab.CI_JOB_ID` = the training job, pipeline
    and merge request ids, and the gate's verdict when there is one;
  - a new model the build job turned into an image (its build.env names this model's sha256) becomes
    version X.Y.Z (the image's semver) of the model, with its files, metrics, params and the image
    digest. Without a build record (merge request, rejected gate, failed build) no version is made.
Re-running the job is safe: the run and the version are found again and completed, never duplicated.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .. import artifact, dockerutil, gitlab_api, log
from ..errors import ModelCIError
from ..model_registry import ModelRegistry, stage_files
from ..settings.publish import PublishSettings
from . import Result

MAX_PARAMS = 200
MAX_VALUE = 500


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in sorted(value.items()):
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif len(out) < MAX_PARAMS and value is not None:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        out[prefix] = text[:MAX_VALUE]


def run_params(record: dict[str, Any]) -> dict[str, str]:
    """The resolved training parameters: the config with its defaults (without data listings and the
    gate/monitor policies, which are not training parameters), then the estimator's tuned values."""
    params: dict[str, str] = {}
    config = {k: v for k, v in (record.get("config") or {}).items() if k not in ("data", "gate", "monitor")}
    _flatten("", config, params)
    _flatten("seeded", record.get("seeded_params") or {}, params)
    _flatten("best", record.get("best_params") or {}, params)
    return params


def numeric(metrics: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in (metrics or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")}


def _verdict(source: Path, sha256: str) -> dict[str, Any] | None:
    path = source / "gate" / "verdict.json"
    if not path.is_file():
        return None
    verdict = artifact.read_json(path, "gate verdict (verdict.json)")
    if not isinstance(verdict, dict) or verdict.get("sha256") != sha256:
        log.warn(f"{path}: verdict is for another model; not recorded")
        return None
    return verdict


def run(s: PublishSettings) -> Result:
    """The gate's note first (it tells people why, also after a REJECT), then the registry."""
    source = Path(s.source)
    result: dict[str, Any] = {"registry": s.backend, "run": None, "version": None,
                              "note": _note(s, source / "gate")}
    try:
        return _publish(s, source, result)
    finally:
        _annotations(s, result)


def _note(s: PublishSettings, gate_dir: Path) -> dict[str, Any] | None:
    """Post (or update in place) the gate's evidence as the MR or commit note: this job is the only one
    holding GitLab's write token (docs/design.md#evaluation-set-and-champion)."""
    if not s.report or not (gate_dir / "verdict.json").is_file():
        return None
    from ..report import post_report

    posted = post_report(gitlab_api.from_env(scope=gitlab_api.SCOPE_API), gate_dir, mr_iid=s.mr_iid,
                         commit_sha=s.commit, plot=True)
    log.info(f"report: {posted['action']} note {posted['note_id']} ({posted['verdict']})")
    return posted


def _annotations(s: PublishSettings, result: dict[str, Any]) -> None:
    """GitLab's annotations report (Free tier): links on the job page to whichever exist, the MR or commit
    note, the environments and the model version."""
    base = (s.project_url or "").rstrip("/")
    links: list[dict[str, Any]] = []
    note = result.get("note") or {}
    if base and note.get("note_id"):
        where = f"merge_requests/{s.mr_iid}" if s.mr_iid else f"commit/{s.commit}"
        links.append({"external_link": {"label": "gate report (note)",
                                        "url": f"{base}/-/{where}#note_{note['note_id']}"}})
    if base and result.get("version"):
        links.append({"external_link": {"label": "environments", "url": f"{base}/-/environments"}})
        version = result["version"]
        label = f"model version {version.get('version', '')}" if isinstance(version, dict) else "model version"
        links.append({"external_link": {"label": label.strip(), "url": f"{base}/-/ml/models"}})
    path = Path(s.out).with_name("annotations.json")
    artifact.write_json_atomic(path, {"modelci": links})


def _publish(s: PublishSettings, source: Path, result: dict[str, Any]) -> Result:
    model_dir = source / "model"
    if s.backend == "none":
        log.info("model_registry is none: nothing to publish")
        return _done(s, result)
    if not (model_dir / artifact.META_FILE).is_file():
        log.info(f"{model_dir}: no model trained in this pipeline; nothing to publish")
        return _done(s, result)
    meta = artifact.verify_model(model_dir)  # a hash of the file, never an unpickling
    record = artifact.read_json(source / "run.json", "run record (run.json)")
    name = str(meta.get("name") or "")
    verdict = _verdict(source, meta["sha256"])
    build_env = source / "build.env"
    build = dockerutil.read_dotenv(build_env) if build_env.is_file() else {}
    new_version = bool(build) and s.default_branch and build.get("MODELCI_MODEL_SHA256") == meta["sha256"]
    if build and build.get("MODELCI_MODEL_SHA256") != meta["sha256"]:
        log.info("the build job built another model (an image-only rebuild): no new registry version")

    if s.backend == "gitlab":
        from ..ml_registry import GitLabModelRegistry

        registry = GitLabModelRegistry(gitlab_api.from_env(scope=gitlab_api.SCOPE_API), name)
        result["run"] = registry.log_training(
            run_key=str(record.get("run_id") or meta.get("run_id") or meta["sha256"]),
            run_name=f"{name} {str(record.get('run_id') or '')[:24]}".strip(),
            params=run_params(record), metrics=numeric(record.get("metrics") or meta.get("metrics")),
            tags=_run_tags(s, record, meta, verdict))
    if not new_version:
        if s.default_branch and not build:
            log.info("no build record (out/build.env): the gate rejected or the build failed; no version")
        return _done(s, result)
    version = build.get("MODELCI_MODEL_VERSION") or ""
    if verdict is None:
        raise ModelCIError(f"{source}/gate/verdict.json: missing for model sha256 {meta['sha256'][:12]}…; the "
                           "registry only takes models with a passing gate verdict (publish needs the gate job)")
    staged = stage_files(model_dir, version, run_record=source / "run.json", verdict=source / "gate" / "verdict.json")
    if s.backend == "generic":
        generic = ModelRegistry(gitlab_api.from_env(scope=gitlab_api.SCOPE_PACKAGES_WRITE), name)
        result["version"] = generic.push(model_dir, version, run_record=source / "run.json",
                                         verdict=source / "gate" / "verdict.json")
        return _done(s, result)
    tags = {"modelci.image": build.get("MODELCI_IMAGE", ""), "modelci.image_digest":
            build.get("MODELCI_IMAGE_DIGEST", ""), "modelci.commit": s.commit or str(meta.get("commit") or ""),
            "modelci.data_sha256": str(meta.get("data_sha256") or ""), "modelci.verdict": str(verdict.get("verdict")),
            "modelci.training_run": str((result["run"] or {}).get("run_id") or "")}
    if s.job_id:
        tags["gitlab.CI_JOB_ID"] = s.job_id
    if s.pipeline_id:
        tags["modelci.pipeline_id"] = s.pipeline_id
    result["version"] = registry.publish(
        staged, version, params=run_params(record), metrics=numeric(meta.get("metrics")),
        tags={k: v for k, v in tags.items() if v}, description=_description(name, version, build, s))
    result["files"] = {n: hashlib.sha256(b).hexdigest() for n, b in staged.items()}
    return _done(s, result)


def _run_tags(s: PublishSettings, record: dict[str, Any], meta: dict[str, Any],
              verdict: dict[str, Any] | None) -> dict[str, str]:
    tags = {"modelci.model_sha256": meta["sha256"],
            "modelci.data_sha256": str((record.get("data") or {}).get("sha256") or meta.get("data_sha256") or ""),
            "modelci.commit": str(record.get("commit") or s.commit or ""),
            "modelci.pipeline_id": str(record.get("pipeline_id") or s.pipeline_id or ""),
            "modelci.ref": s.ref or "", "modelci.merge_request_iid": s.mr_iid or ""}
    train_job = record.get("job_id")
    if train_job and str(train_job).isdigit():
        tags["gitlab.CI_JOB_ID"] = str(train_job)  # links the run to the job that trained it
    if verdict is not None:
        tags.update({"modelci.verdict": str(verdict.get("verdict")),
                     "modelci.verdict_passed": str(bool(verdict.get("passed"))).lower(),
                     "modelci.verdict_dry_run": str(bool(verdict.get("dry_run"))).lower()})
    return {k: v for k, v in tags.items() if v}


def _description(name: str, version: str, build: dict[str, str], s: PublishSettings) -> str:
    return (f"{name} {version}: serving image {build.get('MODELCI_IMAGE', '?')}"
            + (f", published by job {s.job_url}" if s.job_url else ""))


def _done(s: PublishSettings, result: dict[str, Any]) -> Result:
    artifact.write_json_atomic(s.out, result)
    return Result(result)
