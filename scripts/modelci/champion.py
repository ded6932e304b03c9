"""Find the champion: the model production serves now (docs/design.md#evaluation-set-and-champion).

Order: production's lineage endpoint (works anywhere); else the registry's highest model version
(fallback). The champion's artifact is copied out of its serving image, verified by sha256.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import requests

from . import artifact, dockerutil, log
from .errors import ModelCIError
from .oci import ImageRepo, RegistryClient, parse_semver


def lineage(url: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """GET <url>/lineage, or None when nothing answers there (no production yet)."""
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


def latest_version(repo: ImageRepo) -> str | None:
    user, password = dockerutil.registry_credentials()
    tags = RegistryClient(repo.registry, user, password).tags(repo.path)
    versions = sorted((v, t) for t in tags if (v := parse_semver(t)))
    return versions[-1][1] if versions else None


def resolve(production_url: str | None, repo: ImageRepo) -> dict[str, Any] | None:
    """Return {"version", "source", "lineage"} for the champion, or None for the very first model."""
    if production_url:
        info = lineage(production_url)
        if info:
            log.info(f"champion: production at {production_url} serves {info.get('name')} "
                     f"{info['model_version']} (sha256 {str(info.get('sha256'))[:12]}…)")
            return {"version": info["model_version"], "source": "production-lineage", "lineage": info}
        log.warn(f"champion: nothing answers at {production_url}/lineage; falling back to the registry")
    version = latest_version(repo)
    if version:
        log.info(f"champion: registry's latest model version {version} ({repo})")
        return {"version": version, "source": "registry-latest", "lineage": None}
    log.info("champion: none (no production and no version in the registry): first model")
    return None


def fetch(production_url: str | None, repo: ImageRepo, out_dir: str | Path) -> dict[str, Any] | None:
    """Resolve the champion and copy its model directory to out_dir (verified). None = no champion."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    found = resolve(production_url, repo)
    if not found:
        return None
    c = dockerutil.client()
    auth = dockerutil.login(c, repo.registry)
    ref = repo.tag(found["version"])
    dockerutil.pull(c, ref, auth)
    dockerutil.extract_dir(c, ref, "/app/artifact", out_dir)
    meta = artifact.verify_model(out_dir)
    lin = found.get("lineage") or {}
    if lin.get("sha256") and lin["sha256"] != meta["sha256"]:
        raise ModelCIError(f"champion image {ref} holds model sha256 {meta['sha256'][:12]}… but production "
                           f"reports {lin['sha256'][:12]}…; the registry tag was overwritten, investigate")
    found.update({"image": ref, "sha256": meta["sha256"], "dir": str(out_dir)})
    return found
