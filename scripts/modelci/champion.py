"""Find the champion: the model production runs now (docs/design.md#evaluation-set-and-champion).

The champion is named only by `trust.production_release`: GitLab's last successful production
deployment, production's /lineage at the URL GitLab records (it reports the image digest the deploy
started) and that image's labels read by digest. Never by "highest tag" of the serving image: anyone
who can push to the registry can push `serving:999.0.0`. A project that never deployed to
production has no champion; production silent while a deployment exists, or GitLab's API
unreachable, fails closed.

Only the model is fetched: the image's last layer (the model directory) through the registry API,
every blob checked against its digest, then model.joblib checked against the sha256 the trusted
record names, before anything can unpickle it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from . import artifact, log, trust
from .errors import ModelCIError
from .oci import ImageRepo, split_digest_ref


def lineage(url: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """GET <url>/lineage, or None when nothing answers there."""
    try:
        resp = requests.get(url.rstrip("/") + "/lineage", timeout=timeout)
    except requests.RequestException:
        return None
    if resp.status_code != 200:
        return None
    try:
        data = resp.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("model_version") else None


def resolve(production_url: str | None, environment: str = "production") -> dict[str, Any] | None:
    """The trusted record of the champion (trust.production_release), or None for a project that never
    deployed to `environment`. A production URL given otherwise must be the one GitLab records."""
    record = trust.production_release(environment)
    if record is None:
        log.info(f"champion: GitLab records no successful {environment} deployment: no champion (first model)")
        return None
    if production_url and production_url.rstrip("/") != record["url"]:
        raise ModelCIError(f"production URL {production_url}: not the URL GitLab records for {environment} "
                           f"({record['url']}); the champion is read only from GitLab's record, fix the "
                           "production_url input or the environment's url")
    log.info(f"champion: {environment} runs {record['image']} (model {record['model_version']}, sha256 "
             f"{record['model_sha256'][:12]}…, deployment #{record['deployment_id']})")
    return record


def fetch(production_url: str | None, repo: ImageRepo | None, out_dir: str | Path,
          environment: str = "production") -> dict[str, Any] | None:
    """Copy the champion's model directory to out_dir, verified against the trusted record. Returns
    {"version", "image", "digest", "sha256", "dir", "source"}; None (out_dir absent) = no champion."""
    out_dir = Path(out_dir)
    artifact.refuse_unsafe_out(out_dir)
    artifact.check_replaceable(out_dir)
    trust.refuse_committed_outputs()
    found = resolve(production_url, environment)
    if not found:
        if out_dir.exists() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        return None
    image_repo, digest = split_digest_ref(found["image"])
    if repo is not None and str(repo) != str(image_repo):
        log.warn(f"champion: production runs an image of {image_repo}, not of {repo}; reading it by digest")
    with artifact.atomic_dir(out_dir) as tmp:
        trust.registry_reader(image_repo.registry).model_layer(image_repo.path, digest, tmp)
        model = tmp / artifact.MODEL_FILE
        if not model.is_file() or artifact.sha256_file(model) != found["model_sha256"]:
            raise ModelCIError(f"champion {found['image']}: its model file does not match the sha256 the "
                               f"deployment record names ({found['model_sha256'][:12]}…); refusing to load it")
        meta = artifact.verify_model(tmp)
    return {"version": found["model_version"] or meta.get("version"), "source": "production-deployment",
            "image": found["image"], "digest": digest, "sha256": found["model_sha256"], "dir": str(out_dir),
            "deployment_id": found["deployment_id"], "commit": found["commit"]}
