"""`modelci registry`: read (and, for the generic registry, write) model versions.

Both registries (docs/model-registry.md): `gitlab` (GitLab's Model Registry) and `generic` (generic
packages). `pull` verifies every file against the sha256 the version recorded and never replaces a
directory it did not create.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import artifact, gitlab_api, log
from ..errors import ModelCIError
from ..model_registry import ModelRegistry, safe_out_dir
from ..settings.registry import RegistrySettings
from . import Result


def config_model(path: str | None) -> dict[str, Any]:
    """The config's `model:` section, read directly (no data needed for registry commands)."""
    if not path or not Path(path).exists():
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ModelCIError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    section = data.get("model") if isinstance(data, dict) else None
    return section if isinstance(section, dict) else {}


def model_name(s: RegistrySettings, meta: dict[str, Any] | None = None) -> str:
    name = s.name or (meta or {}).get("name") or config_model(s.config).get("name")
    if not name:
        raise ModelCIError(f"{s.config}: model.name: not found; pass --name or set MODELCI_MODEL_NAME")
    return str(name)


def _backend(s: RegistrySettings, name: str, scope: str) -> Any:
    if s.backend == "none":
        raise ModelCIError("MODELCI_MODEL_REGISTRY=none: no registry to use; pass --backend gitlab or generic")
    if s.backend == "gitlab":
        from ..ml_registry import GitLabModelRegistry

        return GitLabModelRegistry(gitlab_api.from_env(scope=gitlab_api.SCOPE_API), name)
    return ModelRegistry(gitlab_api.from_env(scope=scope), name)


def run(s: RegistrySettings) -> Result:
    if s.action == "pull":
        safe_out_dir(s.out or "")  # refused before anything is fetched
        registry = _backend(s, model_name(s), gitlab_api.SCOPE_PACKAGES_READ)
        version = s.version or ""
        if version == "latest":
            version = registry.latest() or ""
            if not version:
                raise ModelCIError(f"registry: {registry.name} has no version yet; nothing to pull")
        return Result(registry.pull(version, s.out or ""))
    if s.action == "latest":
        registry = _backend(s, model_name(s), gitlab_api.SCOPE_PACKAGES_READ)
        latest = registry.latest() if s.major is None or s.backend == "gitlab" else registry.latest(s.major)
        return Result({"name": registry.name, "version": latest})
    if s.action == "push":  # the generic registry only: GitLab's Model Registry is written by `modelci publish`
        model_dir = Path(s.model or "out/model")
        meta = artifact.read_meta(model_dir)
        generic = ModelRegistry(gitlab_api.from_env(scope=gitlab_api.SCOPE_PACKAGES_WRITE), model_name(s, meta))
        return Result(generic.push(model_dir, s.version or "",
                                   run_record=s.run_record or str(model_dir.parent / "run.json"),
                                   verdict=s.verdict or str(model_dir.parent / "gate" / "verdict.json")))
    # next-version: the generic registry's versions (builds take theirs from the image tags)
    major = s.major
    if major is None:
        major = config_model(s.config).get("major")
        if major is None:
            raise ModelCIError(f"{s.config}: model.major: not set; pass --major N")
    generic = ModelRegistry(gitlab_api.from_env(scope=gitlab_api.SCOPE_PACKAGES_READ), model_name(s))
    version = generic.next_version(major, patch=s.patch)
    if s.dotenv:
        os.makedirs(os.path.dirname(os.path.abspath(s.dotenv)), exist_ok=True)
        with open(s.dotenv, "w") as fh:
            fh.write(f"MODELCI_MODEL_VERSION={version}\n")
    log.info(f"registry: next version of {generic.name}: {version}")
    return Result({"name": generic.name, "version": version})
