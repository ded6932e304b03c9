"""Settings of `modelci publish` (templates/publish.yml; docs/model-registry.md)."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from . import get, pick, pick_bool, var
from .registry import CONFIG, backend

PUBLISH_FROM = var("MODELCI_PUBLISH_FROM", "Directory holding this pipeline's job artifacts that publish "
                   "reads: model/ and run.json (train), gate/verdict.json (gate), build.env (build).", "out",
                   kind="path", used_by=("publish",))
PUBLISH_OUT = var("MODELCI_PUBLISH_OUT", "Where publish writes its record (JSON) for the job's artifacts.",
                  "out/publish.json", kind="path", used_by=("publish",))
REPORT = var("MODELCI_REPORT", "Post the gate's evidence as the MR or commit note, updated in place (the "
             "publish job; needs MODELCI_GITLAB_TOKEN with the api scope).", "false", kind="bool",
             used_by=("publish",))


@dataclass(frozen=True)
class PublishSettings:
    backend: str
    config: str
    source: str
    out: str
    # the pipeline, as GitLab describes it (predefined CI/CD variables, not modelci settings)
    job_id: str | None = None
    pipeline_id: str | None = None
    mr_iid: str | None = None
    commit: str | None = None
    ref: str | None = None
    default_branch: bool = False
    job_url: str | None = None
    report: bool = False
    project_url: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PublishSettings:
        env = os.environ
        branch, default = env.get("CI_COMMIT_BRANCH"), env.get("CI_DEFAULT_BRANCH")
        return cls(backend=backend(args.model_registry), config=pick(args.config, CONFIG.name) or "model/modelci.yml",
                   source=pick(args.source, PUBLISH_FROM.name) or "out",
                   out=pick(args.out, PUBLISH_OUT.name) or get(PUBLISH_OUT.name) or "out/publish.json",
                   job_id=env.get("CI_JOB_ID") or None, pipeline_id=env.get("CI_PIPELINE_ID") or None,
                   mr_iid=env.get("CI_MERGE_REQUEST_IID") or None, commit=env.get("CI_COMMIT_SHA") or None,
                   ref=env.get("CI_COMMIT_REF_NAME") or None,
                   default_branch=bool(branch) and branch == default, job_url=env.get("CI_JOB_URL") or None,
                   report=pick_bool(getattr(args, "report", None), REPORT.name),
                   project_url=env.get("CI_PROJECT_URL") or None)
