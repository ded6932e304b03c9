"""`modelci build`: build the serving image around a model, push it, hand the digest on.

The model comes from this pipeline's training job (`--model`), or, when the pipeline did not train
(an app/Dockerfile-only change), from the champion's image: the same model, a new patch version.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .. import artifact, champion, dockerutil, log, trust
from ..errors import ModelCIError
from ..oci import ImageRepo, RegistryClient, next_version, push_version


def register(sub: Any) -> None:
    p = sub.add_parser("build", help="build and push the serving image for a model",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=os.environ.get("MODELCI_CONFIG", "model/modelci.yml"),
                   help="model config (reads model.name and model.major) [MODELCI_CONFIG]")
    p.add_argument("--model", default=os.environ.get("MODELCI_MODEL_DIR", "out/model"),
                   help="model directory from training; when absent the champion's model is reused "
                        "[MODELCI_MODEL_DIR, default out/model]")
    p.add_argument("--verdict", default=os.environ.get("MODELCI_VERDICT", "out/gate/verdict.json"),
                   help="gate verdict for a freshly trained model; building needs a passing one")
    p.add_argument("--image", default=os.environ.get("MODELCI_IMAGE_REPO"),
                   help="image repository, e.g. $CI_REGISTRY_IMAGE/serving [MODELCI_IMAGE_REPO]")
    p.add_argument("--context", default=os.environ.get("MODELCI_BUILD_CONTEXT", "."),
                   help="directory holding the Dockerfile and app/ [MODELCI_BUILD_CONTEXT, default .]")
    p.add_argument("--base-image", default=os.environ.get("MODELCI_BASE_IMAGE"),
                   help="BASE_IMAGE build argument [MODELCI_BASE_IMAGE; default: the Dockerfile's]")
    p.add_argument("--production-url", default=os.environ.get("MODELCI_PRODUCTION_URL"),
                   help="production URL, to find the champion when reusing its model")
    p.add_argument("--model-registry", action=argparse.BooleanOptionalAction,
                   default=os.environ.get("MODELCI_MODEL_REGISTRY", "false") == "true",
                   help="also store a newly trained model (model, run record, verdict) as a version of "
                        "GitLab's generic package registry [MODELCI_MODEL_REGISTRY=true]")
    p.add_argument("--dotenv", default=os.environ.get("MODELCI_BUILD_DOTENV", "out/build.env"),
                   help="dotenv report for later jobs (MODELCI_IMAGE=…@sha256:…)")
    p.set_defaults(func=run)


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


def _check_verdict(verdict_path: str, model_dir: Path) -> dict[str, Any]:
    require: Callable[[str, Path], dict[str, Any]] | None
    try:
        from ..gate import require_passing_verdict
        require = require_passing_verdict
    except ImportError:  # gate module not present: minimal check
        require = None
    if require is not None:
        return require(verdict_path, model_dir)
    verdict = artifact.read_json(verdict_path, "gate verdict")
    meta = artifact.verify_model(model_dir)
    if verdict.get("sha256") != meta["sha256"] or not verdict.get("passed") or verdict.get("dry_run"):
        raise ModelCIError(f"{verdict_path}: no passing gate verdict for model sha256 {meta['sha256'][:12]}…")
    return verdict


def run(args: argparse.Namespace) -> int:
    t0 = time.time()
    if not args.image:
        raise ModelCIError("no image repository: pass --image or set MODELCI_IMAGE_REPO "
                           "(e.g. $CI_REGISTRY_IMAGE/serving)")
    repo = ImageRepo.parse(args.image)
    trust.refuse_committed_outputs()  # a model or verdict committed under out/ is never built
    name, major = _model_identity(args.config)
    context = Path(args.context)
    bundled = os.environ.get("MODELCI_SERVING_CONTEXT")
    if bundled and not (context / "Dockerfile").exists() and not (context / "app").exists():
        log.info(f"no Dockerfile/app in {context}: using modelci's serving app from {bundled}")
        context = Path(bundled)
    for needed in ("Dockerfile", "app"):
        if not (context / needed).exists():
            raise ModelCIError(f"{context / needed}: missing from the build context; set --context to the "
                               "directory holding the serving Dockerfile and app/")
    c = dockerutil.client()
    auth = dockerutil.login(c, repo.registry)
    user, password = dockerutil.registry_credentials()
    tags = RegistryClient(repo.registry, user, password).tags(repo.path)

    work = Path(tempfile.mkdtemp(prefix="modelci-build-"))
    try:
        model_dir = Path(args.model)
        if (model_dir / artifact.META_FILE).exists():
            meta = artifact.verify_model(model_dir)
            verdict = _check_verdict(args.verdict, model_dir)
            version = next_version(tags, major)
            reason = "new model"
            log.info(f"building new model {name} {version} (verdict {verdict.get('verdict')})")
        else:
            log.info(f"no trained model at {model_dir}: reusing the champion's model (image-only change)")
            found = champion.fetch(args.production_url, repo, work / "champion")
            if not found:
                raise ModelCIError(f"{model_dir}: no trained model and no champion to reuse; run the "
                                   "pipeline with FORCE_RETRAIN=true to train the first model")
            model_dir = Path(found["dir"])
            meta = artifact.verify_model(model_dir)
            version = next_version(tags, major, same_model_as=found["version"])
            reason = f"same model as {found['version']}"
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

        sha = os.environ.get("CI_COMMIT_SHA") or ""
        short = os.environ.get("CI_COMMIT_SHORT_SHA") or sha[:8] or "local"
        metrics = {k: v for k, v in (meta.get("metrics") or {}).items() if isinstance(v, (int, float))}
        buildargs = {
            "MODEL_VERSION": version,
            "MODEL_SHA256": meta["sha256"],
            "DATA_SHA256": str(meta.get("data_sha256") or ""),
            "MODEL_METRICS": json.dumps(metrics, sort_keys=True),
            "VCS_REF": sha,
            "SOURCE_URL": os.environ.get("CI_PROJECT_URL", ""),
            "CREATED": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if args.base_image:
            buildargs["BASE_IMAGE"] = args.base_image
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
            pushed, pushed_ref = push_version(c, repo, version, [short], image, auth)  # never overwrites
            push_s = time.time() - tp
        registry_result = None
        if args.model_registry and reason == "new model":
            from .. import gitlab_api
            from ..model_registry import ModelRegistry

            with log.section("modelci_model_registry", f"model registry: {name} {version}"):
                registry_result = ModelRegistry(gitlab_api.from_env(scope=gitlab_api.SCOPE_PACKAGES_WRITE),
                                                name).push(model_dir, version,
                                                           run_record=str(model_dir.parent / "run.json"),
                                                           verdict=args.verdict)
        ref = pushed_ref
        digest = ref.split("@", 1)[1]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "image": ref, "digest": digest, "repository": str(repo), "tags": [version, short],
        "model_name": name, "model_version": version, "model_sha256": meta["sha256"], "reason": reason,
        "timings": {"build_s": round(build_s, 2), "push_s": round(push_s, 2),
                    "total_s": round(time.time() - t0, 2)},
        "pushed_bytes_reported": pushed, "model_registry": registry_result,
    }
    dockerutil.write_dotenv(args.dotenv, {
        "MODELCI_IMAGE": ref, "MODELCI_IMAGE_DIGEST": digest, "MODELCI_MODEL_VERSION": version,
        "MODELCI_MODEL_SHA256": meta["sha256"],
    })
    log.info(f"pushed {version_tag} = {ref}")
    print(dockerutil.dumps(result))
    return 0
