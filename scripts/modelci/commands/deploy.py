"""`modelci deploy`: put an image (by digest) behind an environment's URL on a Docker host, safely.

The target is the Docker engine at DOCKER_HOST (unix://, tcp:// with TLS, ssh://); readiness, the
smoke test, the port choice and the lock happen on the target. Starts the new backend beside the
old one, switches the environment's proxy gracefully, then stops the old backend; on any failure
(SIGTERM included) the proxy keeps what it served. `--teardown` removes an environment's
containers. See docs/deploy-targets.md.
"""
from __future__ import annotations

import argparse
from typing import Any

from ..settings.deploy import DeploySettings
from ..steps import Result
from ..steps import deploy as step


def register(sub: Any) -> None:
    p = sub.add_parser("deploy", help="deploy the serving image to an environment (staging, production)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--environment", help="environment name [MODELCI_ENVIRONMENT, CI_ENVIRONMENT_NAME]")
    p.add_argument("--url", help="environment URL http://HOST:PORT: HOST the target's address, PORT where "
                                 "its proxy listens [MODELCI_ENVIRONMENT_URL, CI_ENVIRONMENT_URL]")
    p.add_argument("--image", help="image pinned by digest, REPO@sha256:… [MODELCI_IMAGE]")
    p.add_argument("--namespace", help="prefix of the target's container names "
                                       "[MODELCI_DEPLOY_NAMESPACE, CI_PROJECT_PATH_SLUG]")
    p.add_argument("--release-checks", choices=["true", "false"], default="false",
                   help="production's release checks (scripts/modelci/trust.py): only the image this "
                        "pipeline's build job produced, holding a model with a passing gate verdict for its "
                        "sha256 or the model the environment runs now; set by the component's script, no "
                        "variable can (always on for the environment named production)")
    p.add_argument("--ready-timeout", type=float, help="seconds to wait for readiness [MODELCI_READY_TIMEOUT]")
    p.add_argument("--proxy-image", help="the proxy image, pulled onto the target [MODELCI_PROXY_IMAGE]")
    p.add_argument("--grpc-port", type=int, help="port of the proxy's gRPC listener, 0: none "
                                                 "[MODELCI_PROXY_GRPC_PORT]")
    p.add_argument("--dotenv", help="write a dotenv report (MODELCI_DEPLOYED_*) here [MODELCI_DEPLOY_DOTENV]")
    p.add_argument("--teardown", action="store_true",
                   help="remove the environment's proxy, backends and lock instead of deploying")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Result:
    return step.run(DeploySettings.from_args(args))
