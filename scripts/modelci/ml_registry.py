"""Model versions in GitLab's Model Registry and training runs in its model experiments.

The `model_registry: gitlab` choice (the default); docs/model-registry.md describes what appears where.
A model version X.Y.Z of model M (GitLab >= 17.6, every tier) holds the files model.joblib, model.json,
smoke.json, run.json, verdict.json (its `ml_model` package), and, on the version's own run, the
model's params and metrics, the serving image's digest and `gitlab.CI_JOB_ID` (the job that
published it). Every training run is a run (GitLab: a candidate) of the experiment `[model]M`, the
experiment GitLab keeps for each model.

Publishing is ordered and idempotent, so that a failure at any step leaves no half-published version
and a retry of the job completes it:
  1. the files are staged and checked locally (model_registry.stage_files), before any write;
  2. the version is created with tags recording the model's sha256 and every file's sha256;
  3. params, metrics and tags are logged on the version's run (only what is missing);
  4. each file is uploaded unless GitLab already holds it with the recorded sha256;
  5. the run gets the tag `modelci.published=true`: only then is the version complete.
Readers (`registry pull`, `latest`) refuse a version without that tag. A retry finds the incomplete
version by its semver, checks that it is for the same model (versions are immutable) and resumes.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from . import artifact, log
from .errors import ModelCIError
from .gitlab_api import GitLabClient
from .gitlab_mlflow import MlflowAPI, run_data, tags_of
from .model_registry import FILES, pull_marker, require_semver, safe_out_dir

COMPLETE = "modelci.published"
MODEL_SHA = "modelci.model_sha256"
FILE_SHAS = "modelci.files"


def experiment_name(model: str) -> str:
    """GitLab logs a model's runs in the experiment named `[model]<name>` (docs/model-registry.md)."""
    return f"[model]{model}"


def semver_of(version: dict[str, Any]) -> str | None:
    """GitLab answers `version` = the model version's id and `aliases` = [semver]."""
    aliases = version.get("aliases") or []
    return str(aliases[0]) if aliases else tags_of(version).get("gitlab.version")


class GitLabModelRegistry:
    def __init__(self, client: GitLabClient, name: str):
        if not name:
            raise ModelCIError("model.name: empty; set model.name in the config")
        self.api = MlflowAPI(client)
        self.name = name
        self._model: dict[str, Any] | None = None

    def _ensure_model(self) -> None:
        if self._model is None:
            self._model = self.api.ensure_model(self.name, description=f"{self.name}, published by modelci")

    # ---- experiments ------------------------------------------------------------------------------
    def log_training(self, *, run_key: str, run_name: str, params: dict[str, str], metrics: dict[str, float],
                     tags: dict[str, str]) -> dict[str, Any]:
        """One run per training in the model's experiment, found again by `modelci.run_id` (a retried
        job, or a model reused from the cache by a later pipeline): only what is missing is added,
        nothing is logged twice (GitLab refuses a param or tag set twice)."""
        self._ensure_model()
        exp = self.api.experiment_id(experiment_name(self.name))
        run = next((r for r in self.api.search_runs(exp) if tags_of(r).get("modelci.run_id") == run_key), None)
        created = run is None
        if run is None:
            run = self.api.create_run(exp, run_name, {"modelci.run_id": run_key})
        run_id = str(run["info"]["run_id"])
        added = self._complete_run(run, params, metrics, tags)  # a new run holds nothing yet
        if run["info"].get("status") != "FINISHED":
            self.api.end_run(run_id)
        log.info(f"experiment {experiment_name(self.name)}: run {run_id} "
                 f"({'created' if created else 'found'}; {added} values added)")
        return {"experiment_id": exp, "run_id": run_id, "created": created}

    def _complete_run(self, run: dict[str, Any], params: dict[str, str], metrics: dict[str, float],
                      tags: dict[str, str]) -> int:
        have_params, have_metrics, have_tags = run_data(run, "params"), run_data(run, "metrics"), tags_of(run)
        new_params = {k: v for k, v in params.items() if k not in have_params}
        new_metrics = {k: v for k, v in metrics.items() if k not in have_metrics}
        new_tags = {k: v for k, v in tags.items() if k not in have_tags}
        self.api.log_batch(str(run["info"]["run_id"]), metrics=new_metrics, params=new_params, tags=new_tags)
        return len(new_params) + len(new_metrics) + len(new_tags)

    # ---- model versions ---------------------------------------------------------------------------
    def publish(self, staged: dict[str, bytes], version: str, *, params: dict[str, str],
                metrics: dict[str, float], tags: dict[str, str], description: str = "") -> dict[str, Any]:
        require_semver(version)
        meta = json.loads(staged["model.json"])
        shas = {n: hashlib.sha256(staged[n]).hexdigest() for n in FILES}
        self._ensure_model()
        mv = self.api.get_version(self.name, version)
        resumed = mv is not None
        if mv is None:
            mv = self.api.create_version(self.name, version, {MODEL_SHA: meta["sha256"],
                                                              FILE_SHAS: json.dumps(shas, sort_keys=True)},
                                         description)
        else:
            recorded = tags_of(mv)
            if recorded.get(MODEL_SHA) != meta["sha256"]:
                raise ModelCIError(f"registry: {self.name} {version} already holds another model (sha256 "
                                   f"{str(recorded.get(MODEL_SHA))[:12]}…); versions are immutable, build the "
                                   "next version")
            if recorded.get(FILE_SHAS) and json.loads(recorded[FILE_SHAS]) != shas:
                raise ModelCIError(f"registry: {self.name} {version} was started with other files for this model "
                                   "(run.json, verdict.json or smoke.json differ); re-run the publish job of the "
                                   "pipeline that built it")
        version_id = str(mv["version"])
        run = self.api.get_run(str(mv["run_id"]))
        if tags_of(run).get(COMPLETE) == "true":
            log.info(f"registry: {self.name} {version} is already complete")
            return {"name": self.name, "version": version, "id": version_id, "sha256": meta["sha256"],
                    "uploaded": [], "already_complete": True}
        self._complete_run(run, params, metrics, {k: v for k, v in tags.items() if k != COMPLETE})
        uploaded, present = [], []
        for file_name in FILES:
            held = self.api.download_file(version_id, file_name) if resumed else None  # new: holds nothing
            if held is not None and hashlib.sha256(held).hexdigest() == shas[file_name]:
                present.append(file_name)
                continue
            self.api.upload_file(version_id, file_name, staged[file_name])
            uploaded.append(file_name)
        self.api.set_tag(str(mv["run_id"]), COMPLETE, "true")
        log.info(f"registry: {self.name} {version} complete ({'resumed' if resumed else 'new'}; uploaded "
                 f"{', '.join(uploaded) or 'nothing'})")
        return {"name": self.name, "version": version, "id": version_id, "sha256": meta["sha256"],
                "uploaded": uploaded, "already_present": present, "resumed": resumed, "already_complete": False}

    def complete_version(self, version: str) -> dict[str, Any]:
        """The version's registry record, refusing a missing or incomplete one."""
        mv = self.api.get_version(self.name, version)
        if mv is None:
            raise ModelCIError(f"registry: {self.name} {version} does not exist in GitLab's Model Registry of "
                               f"project {self.api.client.project_id}")
        run = self.api.get_run(str(mv["run_id"]))
        if tags_of(run).get(COMPLETE) != "true":
            raise ModelCIError(f"registry: {self.name} {version} is incomplete (publishing did not finish); "
                               "retry the publish job of the pipeline that built it")
        return mv

    def latest(self) -> str | None:
        mv = self.api.latest_version(self.name)
        return semver_of(mv) if mv else None

    def pull(self, version: str, out_dir: str | os.PathLike[str]) -> dict[str, Any]:
        require_semver(version)
        mv = self.complete_version(version)
        recorded_raw = tags_of(mv).get(FILE_SHAS)
        try:
            recorded = json.loads(recorded_raw or "")
        except ValueError:
            recorded = None
        if not isinstance(recorded, dict) or set(recorded) != set(FILES):
            raise ModelCIError(f"registry: {self.name} {version}: no sha256 recorded for its files; it was not "
                               "published by modelci, refusing it")
        out = safe_out_dir(out_dir)
        with artifact.atomic_dir(out) as tmp:
            for file_name in FILES:
                data = self.api.download_file(str(mv["version"]), file_name)
                if data is None:
                    raise ModelCIError(f"registry: {self.name} {version}/{file_name}: not found; retry the "
                                       "publish job that made it")
                actual = hashlib.sha256(data).hexdigest()
                if actual != recorded[file_name]:
                    raise ModelCIError(f"registry: {self.name} {version}/{file_name}: sha256 {actual[:12]}… does "
                                       f"not match the recorded {str(recorded[file_name])[:12]}…; refusing it")
                (tmp / file_name).write_bytes(data)
            meta = artifact.verify_model(tmp)
            verdict = artifact.read_json(tmp / "verdict.json", "gate verdict (verdict.json)")
            if verdict.get("sha256") != meta["sha256"] or tags_of(mv).get(MODEL_SHA) != meta["sha256"]:
                raise ModelCIError(f"registry: {self.name} {version}: verdict.json or the version's record is "
                                   "for another model; refusing it")
        pull_marker(out).write_text(f"{self.name} {version}\n")  # this directory is ours now
        log.info(f"registry: pulled {self.name} {version} (sha256 {meta['sha256'][:12]}…) to {out}")
        return {"name": self.name, "version": version, "sha256": meta["sha256"], "dir": str(Path(out))}
