"""`modelci deploy`: put an image (by digest) behind an environment's URL, safely.

Starts the new backend beside the old one, waits for readiness, replays the model's smoke test,
switches the environment's proxy gracefully, then stops the old backend. On any failure the old
backend keeps serving. `modelci deploy --teardown` removes an environment's containers.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from .. import deploy as deploy_lib
from .. import dockerutil, log, trust
from ..errors import ModelCIError


def register(sub: Any) -> None:
    p = sub.add_parser("deploy", help="deploy the serving image to an environment (staging, production)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--environment", default=os.environ.get("MODELCI_ENVIRONMENT") or
                   os.environ.get("CI_ENVIRONMENT_NAME"), help="environment name [MODELCI_ENVIRONMENT]")
    p.add_argument("--url", default=os.environ.get("MODELCI_ENVIRONMENT_URL") or
                   os.environ.get("CI_ENVIRONMENT_URL"),
                   help="environment URL http://HOST:PORT; its port is where the environment listens")
    p.add_argument("--image", default=os.environ.get("MODELCI_IMAGE"),
                   help="image pinned by digest, REPO@sha256:… [MODELCI_IMAGE from the build dotenv]")
    p.add_argument("--namespace", default=None,
                   help="name prefix for the containers [MODELCI_DEPLOY_NAMESPACE, CI_PROJECT_PATH_SLUG]")
    p.add_argument("--release-checks", choices=["true", "false"], default="false",
                   help="production's release checks (scripts/modelci/trust.py): only the image this "
                        "pipeline's build job produced, holding a model with a passing gate verdict for "
                        "its sha256 or the model the environment runs now; the component's script sets "
                        "it, no variable can (always on for the environment named production)")
    p.add_argument("--ready-timeout", type=float,
                   default=float(os.environ.get("MODELCI_READY_TIMEOUT", "120")),
                   help="seconds to wait for the new backend's readiness [120]")
    p.add_argument("--base-image", default=os.environ.get("MODELCI_BASE_IMAGE"),
                   help="base image for the proxy image when it must be built [MODELCI_BASE_IMAGE]")
    p.add_argument("--dotenv", default=os.environ.get("MODELCI_DEPLOY_DOTENV"),
                   help="write a dotenv report (MODELCI_DEPLOYED_*) here")
    p.add_argument("--teardown", action="store_true",
                   help="remove the environment's proxy and backends instead of deploying")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.environment:
        raise ModelCIError("no environment: pass --environment or set MODELCI_ENVIRONMENT")
    if args.teardown:
        target = deploy_lib.DockerTarget(args.namespace or deploy_lib.default_namespace(), args.environment,
                                         args.url or "http://127.0.0.1:1")
        removed = target.teardown()
        print(dockerutil.dumps({"environment": args.environment, "removed": removed}))
        return 0
    if not args.url:
        raise ModelCIError("no environment URL: pass --url or set the environment's url input")
    if args.release_checks == "true" or args.environment == "production":
        args.image = trust.check_release(args.image, args.environment)["image"]
    if not args.image:
        raise ModelCIError("no image: pass --image or run after the build job (its dotenv report sets "
                           "MODELCI_IMAGE)")
    result = deploy_lib.deploy(args.image, args.environment, args.url, namespace=args.namespace,
                               ready_timeout=args.ready_timeout,
                               base_image=args.base_image)
    if args.dotenv:
        dockerutil.write_dotenv(args.dotenv, {
            "MODELCI_DEPLOYED_IMAGE": result["image"], "MODELCI_DEPLOYED_VERSION": result["model_version"]})
    log.info(f"{args.environment} at {args.url} serves {result['model_name']} {result['model_version']}")
    print(dockerutil.dumps(result))
    return 0

