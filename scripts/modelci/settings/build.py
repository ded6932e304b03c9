"""Settings of `modelci build`."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from . import env, get, pick, var
from .common import BASE_IMAGE, CANDIDATE, CONFIG, IMAGE_REPO, OUT, PRODUCTION_URL

VERDICT = var("MODELCI_VERDICT", "The gate's verdict.json a freshly trained model needs (passing, not a dry "
              "run, bound to the model's sha256) before it is built.", "out/gate/verdict.json", kind="path",
              used_by=("build",))
BUILD_CONTEXT = var("MODELCI_BUILD_CONTEXT", "Directory holding the serving Dockerfile and app/ (the "
                    "`build_context` input).", ".", kind="path", used_by=("build",))
SERVING_CONTEXT = var("MODELCI_SERVING_CONTEXT", "modelci's own Dockerfile and app/, used when the build "
                      "context has neither (set in the tools image).", kind="path", used_by=("build",))
BUILD_DOTENV = var("MODELCI_BUILD_DOTENV", "Dotenv report the build job writes for later jobs "
                   "(MODELCI_IMAGE, MODELCI_IMAGE_DIGEST, MODELCI_MODEL_VERSION, MODELCI_MODEL_SHA256).",
                   "out/build.env", kind="path", used_by=("build",))
IMAGE_DIGEST = var("MODELCI_IMAGE_DIGEST", "Written by the build job's dotenv report: the pushed image's "
                   "digest (sha256:...).", used_by=("build",))
IDENTICAL_TO_PRODUCTION = var("MODELCI_IDENTICAL_TO_PRODUCTION", "Written (true) by the build job's dotenv "
                              "report when the trained model is identical to production's: nothing was built, "
                              "and the deploy jobs exit 0 without deploying.", "false", kind="bool",
                              used_by=("build", "deploy"))


@dataclass(frozen=True)
class BuildSettings:
    config: str
    model: Path
    verdict: str
    image: str | None
    context: Path
    base_image: str | None
    production_url: str | None
    dotenv: str
    serving_context: str | None = None
    commit_sha: str = ""
    short_sha: str = "local"
    project_url: str = ""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BuildSettings:
        sha = env("CI_COMMIT_SHA") or ""
        return cls(config=pick(args.config, CONFIG.name) or "model/modelci.yml",
                   model=Path(pick(args.model, CANDIDATE.name) or Path(get(OUT.name) or "out") / "model"),
                   verdict=pick(args.verdict, VERDICT.name) or "out/gate/verdict.json",
                   image=pick(args.image, IMAGE_REPO.name),
                   context=Path(pick(args.context, BUILD_CONTEXT.name) or "."),
                   base_image=pick(args.base_image, BASE_IMAGE.name),
                   production_url=pick(args.production_url, PRODUCTION_URL.name),
                   dotenv=pick(args.dotenv, BUILD_DOTENV.name) or "out/build.env",
                   serving_context=get(SERVING_CONTEXT.name),
                   commit_sha=sha, short_sha=env("CI_COMMIT_SHORT_SHA") or sha[:8] or "local",
                   project_url=env("CI_PROJECT_URL") or "")
