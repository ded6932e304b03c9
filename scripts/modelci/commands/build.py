"""`modelci build`: build the serving image around a model, push it, hand the digest on.

The model comes from this pipeline's training job (`--model`), or, when the pipeline did not train
(an app/Dockerfile-only change), from the champion's image: the same model, a new patch version.
"""
from __future__ import annotations

import argparse
from typing import Any

from ..settings.build import BuildSettings
from ..steps import Result
from ..steps import build as step


def register(sub: Any) -> None:
    p = sub.add_parser("build", help="build and push the serving image for a model",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="model config (reads model.name and model.major) [MODELCI_CONFIG]")
    p.add_argument("--model", help="model directory from training; when absent the champion's model is reused "
                                   "[MODELCI_CANDIDATE, default out/model]")
    p.add_argument("--verdict", help="gate verdict for a freshly trained model; building needs a passing one "
                                     "[MODELCI_VERDICT, default out/gate/verdict.json]")
    p.add_argument("--image", help="image repository, e.g. $CI_REGISTRY_IMAGE/serving [MODELCI_IMAGE_REPO]")
    p.add_argument("--context", help="directory holding the Dockerfile and app/ [MODELCI_BUILD_CONTEXT, default .]")
    p.add_argument("--base-image", help="BASE_IMAGE build argument [MODELCI_BASE_IMAGE; default: the Dockerfile's]")
    p.add_argument("--production-url", help="production URL, to find the champion when reusing its model "
                                            "[MODELCI_PRODUCTION_URL]")
    p.add_argument("--dotenv", help="dotenv report for later jobs (MODELCI_IMAGE=…@sha256:…) "
                                    "[MODELCI_BUILD_DOTENV, default out/build.env]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Result:
    return step.run(BuildSettings.from_args(args))
