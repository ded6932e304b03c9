"""Model versions in GitLab's generic package registry (the `model_registry: generic` choice; GitLab's
Model Registry is modelci.ml_registry, see docs/model-registry.md).

One generic package per model (package name = model name), one package version per model version
(semver X.Y.Z). Each version holds:

  model.joblib  model.json (its "version" set to the package version)  smoke.json  run.json  verdict.json

Only models with a passing, non-dry-run gate verdict for their exact sha256 are pushed, so the
registry's highest version is the latest *promoted* model (docs/design.md#evaluation-set-and-champion).
Versions are immutable: pushing an existing version again succeeds only for the same model (a re-run
job) and never replaces a file. model.json is uploaded last, so a version without it is incomplete
and is refused by `pull`. `pull` checks every file against the registry's recorded sha256 and the
model against model.json before anything appears in the output directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from . import artifact, log
from .errors import ModelCIError
from .gitlab_api import SCOPE_PACKAGES_READ, SCOPE_PACKAGES_WRITE, GitLabClient

SEMVER_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
PACKAGE_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
UPLOAD_ORDER = ("model.joblib", "smoke.json", "run.json", "verdict.json", "model.json")
FILES = UPLOAD_ORDER
PULL_MARKER = ".modelci-registry-pull"


def stage_files(model_dir: Path, version: str, *, run_record: str | os.PathLike[str],
                verdict: str | os.PathLike[str]) -> dict[str, bytes]:
    """The exact bytes a registry version holds, checked before anything is written anywhere: the model
    (sha256 against model.json), a passing non-dry-run verdict for it, readable run.json and smoke.json;
    model.json gets the version. Deterministic, so a retried job stages the same bytes."""
    from .gate import require_passing_verdict

    require_semver(version)
    meta = artifact.verify_model(model_dir)
    require_passing_verdict(verdict, model_dir)
    artifact.read_json(run_record, "run record (run.json)", kind="run")
    smoke = Path(model_dir) / "smoke.json"
    artifact.read_json(smoke, "smoke test (smoke.json)", kind="smoke")
    meta_out = dict(meta, version=version)
    return {
        "model.joblib": (Path(model_dir) / artifact.MODEL_FILE).read_bytes(),
        "smoke.json": smoke.read_bytes(),
        "run.json": Path(run_record).read_bytes(),
        "verdict.json": Path(verdict).read_bytes(),
        "model.json": (json.dumps(meta_out, indent=2, sort_keys=True, default=str) + "\n").encode(),
    }


def safe_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Where `registry pull --out` may write: never `/`, the home directory, the current directory (or
    one of its parents) or a non-empty directory that an earlier pull did not create (it is replaced
    whole, so its files would be lost). A pull leaves pull_marker(out) beside the directory it made."""
    path = Path(out_dir)
    artifact.refuse_unsafe_out(path)
    resolved = path.resolve()
    if resolved.exists():
        if not resolved.is_dir():
            raise ModelCIError(f"--out {out_dir}: exists and is not a directory; give a new directory")
        if any(resolved.iterdir()) and not pull_marker(resolved).is_file():
            raise ModelCIError(f"--out {out_dir}: directory is not empty and was not made by `modelci registry "
                               "pull`; refusing to replace it, give a new or empty directory")
    return path


def pull_marker(out_dir: str | os.PathLike[str]) -> Path:
    """The file beside a directory `registry pull` made (inside it, it would change the model directory)."""
    path = Path(out_dir).resolve()
    return path.parent / f".{path.name}{PULL_MARKER}"


def parse_semver(version: Any) -> tuple[int, int, int] | None:
    match = SEMVER_RE.match(str(version))
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def require_semver(version: str) -> tuple[int, int, int]:
    parsed = parse_semver(version)
    if not parsed:
        raise ModelCIError(f"--version: {version!r} is not semver X.Y.Z; use e.g. 1.4.0 "
                           "(`modelci registry next-version` computes it)")
    return parsed


class ModelRegistry:
    def __init__(self, client: GitLabClient, name: str):
        if not name or not PACKAGE_NAME_RE.match(name):
            raise ModelCIError(f"model.name: {name!r} cannot be a GitLab generic package name; use only "
                               "letters, digits, '.', '_' and '-'")
        self.client = client
        self.name = name

    # ---- queries ----------------------------------------------------------------------------------
    def versions(self) -> list[dict[str, Any]]:
        """All semver versions of this model, ascending: [{"version", "package_id", "created_at"}]."""
        out = []
        with self.client.errors(f"listing versions of package {self.name}", SCOPE_PACKAGES_READ):
            for pkg in self.client.project.packages.list(package_type="generic", package_name=self.name,
                                                         iterator=True, per_page=100):
                attrs = pkg.attributes
                # package_name is a fuzzy filter on GitLab: keep exact matches only
                if attrs.get("name") != self.name or attrs.get("status", "default") != "default":
                    continue
                parsed = parse_semver(attrs.get("version"))
                if parsed:
                    out.append({"version": attrs["version"], "package_id": attrs["id"],
                                "created_at": attrs.get("created_at"), "_key": parsed})
        out.sort(key=lambda v: v["_key"])
        return [{k: v for k, v in item.items() if k != "_key"} for item in out]

    def latest(self, major: int | None = None) -> str | None:
        found = [v["version"] for v in self.versions()
                 if major is None or parse_semver(v["version"])[0] == major]  # type: ignore[index]
        return found[-1] if found else None

    def next_version(self, major: int, *, patch: bool = False) -> str:
        """Next minor in `major` (X.(max minor+1).0; first N.0.0), or with patch=True the next patch of
        the latest version in `major` (an image rebuilt around the same model)."""
        if isinstance(major, bool) or not isinstance(major, int) or major < 0:
            raise ModelCIError(f"model.major: {major!r} must be a non-negative integer")
        parsed = [parse_semver(v["version"]) for v in self.versions()]
        highest_major = max((p[0] for p in parsed if p), default=None)
        if highest_major is not None and major < highest_major:
            raise ModelCIError(f"model.major: {major} is lower than the registry's major {highest_major} for "
                               f"{self.name}; majors never go back, set model.major to {highest_major} or more")
        same = sorted(p for p in parsed if p and p[0] == major)
        if patch:
            if not same:
                raise ModelCIError(f"registry: {self.name} has no version with major {major} to patch; "
                                   "push a model first")
            x, y, z = same[-1]
            return f"{x}.{y}.{z + 1}"
        if not same:
            return f"{major}.0.0"
        return f"{major}.{max(p[1] for p in same) + 1}.0"

    def _package_id(self, version: str) -> int | None:
        return next((v["package_id"] for v in self.versions() if v["version"] == version), None)

    def package_files(self, package_id: int) -> dict[str, dict[str, Any]]:
        """file name -> newest file record ({"file_sha256", "size", ...})."""
        files: dict[str, dict[str, Any]] = {}
        with self.client.errors(f"listing files of {self.name} package {package_id}", SCOPE_PACKAGES_READ):
            pkg = self.client.project.packages.get(package_id, lazy=True)
            for f in pkg.package_files.list(iterator=True, per_page=100):
                files[f.attributes["file_name"]] = f.attributes
        return files

    def _download(self, version: str, file_name: str) -> bytes | None:
        """The file's bytes, or None when this version has no such file (any other error raises)."""
        import gitlab.exceptions as gexc

        with self.client.errors(f"downloading {self.name} {version}/{file_name}", SCOPE_PACKAGES_READ):
            try:
                return self.client.project.generic_packages.download(self.name, version, file_name)
            except gexc.GitlabGetError as exc:
                if exc.response_code == 404 and "project" not in str(exc.error_message).lower():
                    return None
                raise

    def _upload(self, version: str, file_name: str, data: bytes) -> None:
        with self.client.errors(f"uploading {self.name} {version}/{file_name}", SCOPE_PACKAGES_WRITE):
            self.client.project.generic_packages.upload(self.name, version, file_name, data=data)

    # ---- push / pull ------------------------------------------------------------------------------
    def push(self, model_dir: str | os.PathLike[str], version: str, *, run_record: str | os.PathLike[str],
             verdict: str | os.PathLike[str]) -> dict[str, Any]:
        require_semver(version)
        model_dir = Path(model_dir)
        meta = artifact.verify_model(model_dir)
        if meta.get("name") != self.name:
            raise ModelCIError(f"{model_dir}/model.json: name: {meta.get('name')!r} is not the registry "
                               f"package {self.name!r}; push it under its own name")
        payload = stage_files(model_dir, version, run_record=run_record, verdict=verdict)
        present: dict[str, dict[str, Any]] = {}
        package_id = self._package_id(version)
        if package_id is not None:
            present = self.package_files(package_id)
            existing_meta = self._download(version, "model.json")
            if existing_meta is not None:
                try:
                    their_sha = json.loads(existing_meta).get("sha256")
                except ValueError:
                    their_sha = None
                if their_sha != meta["sha256"]:
                    raise ModelCIError(f"registry: {self.name} {version} already holds another model "
                                       f"(sha256 {str(their_sha)[:12]}…); versions are immutable, push "
                                       f"`modelci registry next-version`")
            joblib_rec = present.get("model.joblib")
            if joblib_rec and joblib_rec.get("file_sha256") not in (None, meta["sha256"]):
                raise ModelCIError(f"registry: {self.name} {version} already holds a different model.joblib; "
                                   "versions are immutable, push the next version")
        uploaded, skipped = [], []
        for name in UPLOAD_ORDER:
            data = payload[name]
            if name in present:
                skipped.append(name)  # immutable: never replace a file of an existing version
                continue
            self._upload(version, name, data)
            uploaded.append(name)
        log.info(f"registry: {self.name} {version} — uploaded {', '.join(uploaded) or 'nothing'}"
                 + (f", already present {', '.join(skipped)}" if skipped else ""))
        return {"name": self.name, "version": version, "sha256": meta["sha256"], "uploaded": uploaded,
                "already_present": skipped}

    def pull(self, version: str, out_dir: str | os.PathLike[str]) -> dict[str, Any]:
        require_semver(version)
        out_dir = Path(out_dir)
        package_id = self._package_id(version)
        if package_id is None:
            known = [v["version"] for v in self.versions()][-5:]
            raise ModelCIError(f"registry: {self.name} {version} does not exist in project "
                               f"{self.client.project_id}; latest versions: {', '.join(known) or 'none'}")
        records = self.package_files(package_id)
        missing = [n for n in UPLOAD_ORDER if n not in records]
        if missing:
            raise ModelCIError(f"registry: {self.name} {version} is incomplete (missing {', '.join(missing)}); "
                               "push it again")
        out_dir = safe_out_dir(out_dir)
        with artifact.atomic_dir(out_dir) as tmp:
            for name in UPLOAD_ORDER:
                data = self._download(version, name)
                if data is None:
                    raise ModelCIError(f"registry: {self.name} {version}/{name}: not found; push it again")
                expected = records[name].get("file_sha256")
                actual = hashlib.sha256(data).hexdigest()
                if expected and expected != actual:
                    raise ModelCIError(f"registry: {self.name} {version}/{name}: sha256 {actual[:12]}… does not "
                                       f"match the registry's {expected[:12]}…; the download was corrupted")
                (tmp / name).write_bytes(data)
            meta = artifact.verify_model(tmp)
            verdict = artifact.read_json(tmp / "verdict.json", "gate verdict (verdict.json)", kind="verdict")
            if verdict.get("sha256") != meta["sha256"]:
                raise ModelCIError(f"registry: {self.name} {version}: verdict.json is for sha256 "
                                   f"{str(verdict.get('sha256'))[:12]}…, not this model; refusing it")
        pull_marker(out_dir).write_text(f"{self.name} {version}\n")  # this directory is ours now
        log.info(f"registry: pulled {self.name} {version} (sha256 {meta['sha256'][:12]}…) to {out_dir}")
        return {"name": self.name, "version": version, "sha256": meta["sha256"], "dir": str(out_dir)}
