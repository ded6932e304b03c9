"""The build step: build the serving image around a model, push it, hand the digest on.

The model comes from this pipeline's training job (the candidate, which needs a passing gate verdict),
or, when the pipeline did not train (an app/Dockerfile-only change), from the champion's image: the
same model, a new patch version (docs/design.md#versions-images-digests). The build context is the
Dockerfile, app/ and artifact/ (the model, copied last so that a model-only change rebuilds one layer).

A trained model identical to the one production serves (same model sha256; or, when training is not
byte-stable, the same reuse key) is not built: the step exits 0 with "identical to production" and
writes only MODELCI_IDENTICAL_TO_PRODUCTION=true (with production's version and sha256) to its
dotenv, so no image is pushed, no version minted, nothing written to the model registry, and the
deploy jobs skip (docs/monitoring.md#a-retrain-that-changes-nothing).
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from .. import artifact, champion, dockerutil, log, trust
from ..errors import ModelCIError
from ..gate import require_passing_verdict
from ..oci import ImageRepo, RegistryClient, claim_owner, next_version, push_version
from ..settings.build import BuildSettings
from . import Result


def _model_identity(config_path: str) -> tuple[str, int]:
    try:
        with open(config_path) as fh:
            cfg = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise ModelCIError(f"{config_path}: config not found; set the config input/MODELCI_CONFIG") from None
    model = cfg.get("model") or {}
    major = model.get("major", 1)
    if not isinstance(major, int) or isinstance(major, bool) or major < 0:
        raise ModelCIError(f"{config_path}: model.major must be a non-negative integer, got {major!r}")
    return str(model.get("name") or "model"), major


def identical_to_production(s: BuildSettings, repo: ImageRepo) -> dict[str, Any] | None:
    """The result of a build that has nothing to do, or None. Compares the trained model with what
    production serves (its /lineage): the model sha256, else, when the training run says it is not
    byte-stable (run.json model.deterministic false), the champion's reuse key."""
    model_dir = Path(s.model)
    if not s.production_url or not (model_dir / artifact.META_FILE).exists():
        return None
    prod = champion.lineage(s.production_url)
    if not prod:
        return None
    meta = artifact.verify_model(model_dir)
    how = None
    if prod.get("sha256") == meta["sha256"]:
        how = "same model sha256"
    else:
        record = model_dir.parent / "run.json"
        run = json.loads(record.read_text()) if record.exists() else {}
        stable = (run.get("model") or {}).get("deterministic", True)
        if not stable and meta.get("reuse_key"):
            with tempfile.TemporaryDirectory(prefix="modelci-champion-") as tmp:
                found = champion.fetch(s.production_url, repo, Path(tmp) / "champion")
                theirs = artifact.read_meta(found["dir"]).get("reuse_key") if found else None
            if theirs == meta["reuse_key"]:
                how = "same reuse key (training is not byte-stable)"
    if how is None:
        return None
    version = str(prod.get("model_version"))
    log.info(f"identical to production: {how} as {prod.get('name')} {version} at {s.production_url}; "
             f"nothing built, pushed or registered")
    dockerutil.write_dotenv(s.dotenv, {"MODELCI_IDENTICAL_TO_PRODUCTION": "true",
                                       "MODELCI_MODEL_VERSION": version, "MODELCI_MODEL_SHA256": meta["sha256"]})
    return {"status": "identical to production", "identical_to_production": True, "reason": how,
            "model_name": prod.get("name"), "model_version": version, "model_sha256": meta["sha256"],
            "production_url": s.production_url, "image": None, "tags": []}


def release_verdict(model_dir: Path) -> dict[str, Any] | None:
    """The verdict production may release this model on: the gate job's own artifact at its fixed path
    (trust.GATE_VERDICT), passing and not a dry run, for exactly this model; else None. MODELCI_VERDICT
    may point the build's own check elsewhere (local runs), never what goes into the build record."""
    try:
        return require_passing_verdict(trust.GATE_VERDICT, model_dir)
    except ModelCIError as exc:
        log.warn(f"{exc}: the build record holds no verdict, so production will not release this image")
        return None


def _record_verdict(dotenv: str, verdict: dict[str, Any] | None) -> None:
    """Keep the verdict this image was built on beside the build record (the job's artifacts, which
    never expire): production's release check and a rollback re-run read it there, not from the gate
    job's artifacts, which expire (docs/design.md#versions-images-digests)."""
    path = Path(dotenv).with_name(trust.BUILD_VERDICT.name)
    if verdict is None:
        path.unlink(missing_ok=True)
    else:
        artifact.write_json_atomic(path, verdict)


def run(s: BuildSettings) -> Result:
    t0 = time.time()
    if not s.image:
        raise ModelCIError("no image repository: pass --image or set MODELCI_IMAGE_REPO "
                           "(e.g. $CI_REGISTRY_IMAGE/serving)")
    trust.refuse_committed_outputs()  # a model or verdict committed under out/ is never built
    repo = ImageRepo.parse(s.image)
    name, major = _model_identity(s.config)
    context = s.context
    bundled = s.serving_context
    if bundled and not (context / "Dockerfile").exists() and not (context / "app").exists():
        log.info(f"no Dockerfile/app in {context}: using modelci's serving app from {bundled}")
        context = Path(bundled)
    for needed in ("Dockerfile", "app"):
        if not (context / needed).exists():
            raise ModelCIError(f"{context / needed}: missing from the build context; set --context to the "
                               "directory holding the serving Dockerfile and app/")
    same = identical_to_production(s, repo)
    if same is not None:
        return Result(same)
    c = dockerutil.client()
    auth = dockerutil.login(c, repo.registry)
    user, password = dockerutil.registry_credentials()
    tags = RegistryClient(repo.registry, user, password).tags(repo.path)
    owner = claim_owner()  # a retried build job of this pipeline resumes the version it claimed

    work = Path(tempfile.mkdtemp(prefix="modelci-build-"))
    try:
        model_dir = Path(s.model)
        if (model_dir / artifact.META_FILE).exists():
            meta = artifact.verify_model(model_dir)
            verdict = require_passing_verdict(s.verdict, model_dir)  # the gate's one verdict check
            record = release_verdict(model_dir)
            version = next_version(tags, major, owner=owner)
            reason = "new model"
            log.info(f"building new model {name} {version} (verdict {verdict.get('verdict')})")
        else:
            log.info(f"no trained model at {model_dir}: reusing the champion's model (image-only change)")
            found = champion.fetch(s.production_url, repo, work / "champion")
            if not found:
                raise ModelCIError(f"{model_dir}: no trained model and no champion to reuse; run the "
                                   "pipeline with FORCE_RETRAIN=true to train the first model")
            model_dir = Path(found["dir"])
            meta = artifact.verify_model(model_dir)
            version = next_version(tags, major, same_model_as=found["version"], owner=owner)
            reason = f"same model as {found['version']}"
            record = None  # production's own model: its release basis is "same model", not a verdict
        # Build context: Dockerfile, app/, artifact/ (the model, copied last in the Dockerfile).
        ctx = work / "context"
        ctx.mkdir()
        shutil.copy2(context / "Dockerfile", ctx / "Dockerfile")
        shutil.copytree(context / "app", ctx / "app",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
        shutil.copytree(model_dir, ctx / "artifact")
        art_meta = dict(meta)
        art_meta["version"] = version
        artifact.write_json_atomic(ctx / "artifact" / artifact.META_FILE, art_meta)
        if not (ctx / "artifact" / "smoke.json").exists():
            log.warn("model has no smoke.json: deploys will only check readiness")

        sha, short = s.commit_sha, s.short_sha
        metrics = {k: v for k, v in (meta.get("metrics") or {}).items() if isinstance(v, (int, float))}
        buildargs = {
            "MODEL_VERSION": version,
            "MODEL_SHA256": meta["sha256"],
            "DATA_SHA256": str(meta.get("data_sha256") or ""),
            "MODEL_METRICS": json.dumps(metrics, sort_keys=True),
            "VCS_REF": sha,
            "SOURCE_URL": s.project_url,
            "CREATED": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if s.base_image:
            buildargs["BASE_IMAGE"] = s.base_image
        version_tag = repo.tag(version)
        with log.section("modelci_build", f"docker build {version_tag} ({reason})"):
            tb = time.time()
            image_id = None
            for chunk in c.api.build(path=str(ctx), tag=version_tag, buildargs=buildargs, rm=True,
                                     forcerm=True, network_mode="host", decode=True):
                if "error" in chunk:
                    raise ModelCIError(f"docker build failed: {chunk['error'].strip()}")
                if chunk.get("stream"):
                    sys.stderr.write(chunk["stream"])
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
            if not image_id:
                raise ModelCIError("docker build produced no image; see the log above")
            build_s = time.time() - tb
        image = c.images.get(image_id)
        with log.section("modelci_push", f"docker push {repo} ({version}, {short})"):
            tp = time.time()
            pushed, ref = push_version(c, repo, version, [short], image, auth, owner)  # never overwrites
            push_s = time.time() - tp
        digest = ref.split("@", 1)[1]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "image": ref, "digest": digest, "repository": str(repo), "tags": [version, short],
        "model_name": name, "model_version": version, "model_sha256": meta["sha256"], "reason": reason,
        "timings": {"build_s": round(build_s, 2), "push_s": round(push_s, 2),
                    "total_s": round(time.time() - t0, 2)},
        "pushed_bytes_reported": pushed,
    }
    _record_verdict(s.dotenv, record)
    dockerutil.write_dotenv(s.dotenv, {
        "MODELCI_IMAGE": ref, "MODELCI_IMAGE_DIGEST": digest, "MODELCI_MODEL_VERSION": version,
        "MODELCI_MODEL_SHA256": meta["sha256"],
    })
    log.info(f"pushed {version_tag} = {ref}")
    return Result(result)
