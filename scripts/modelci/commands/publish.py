"""`modelci publish`: log this pipeline's training as a run of the model's experiment in GitLab and, on
the default branch after the build, make the new model a version of GitLab's Model Registry.

Reads the job artifacts of train (model/, run.json), gate (gate/verdict.json) and build (build.env);
loads no model. See docs/model-registry.md.
"""
from __future__ import annotations

import argparse
from typing import Any

from ..settings.publish import PublishSettings
from ..settings.registry import BACKENDS
from ..steps import Result
from ..steps import publish as step


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("publish", help="training runs to GitLab's experiments, new models to its registry",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-registry", choices=BACKENDS,
                   help="gitlab, generic or none [MODELCI_MODEL_REGISTRY, default gitlab]")
    p.add_argument("--config", help="model config [MODELCI_CONFIG]")
    p.add_argument("--from", dest="source", help="directory of the job artifacts [MODELCI_PUBLISH_FROM, default out]")
    p.add_argument("--out", help="publish record (JSON) [MODELCI_PUBLISH_OUT, default out/publish.json]")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=None,
                   help="post the gate's evidence as the MR/commit note [MODELCI_REPORT]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Result:
    return step.run(PublishSettings.from_args(args))
