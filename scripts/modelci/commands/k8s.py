"""`modelci k8s`: the Kubernetes target, rendered and checked offline (no cluster is contacted).

  modelci k8s render --environment production --image REPO@sha256:<digest> [--replicas 2] [--port 8080]
                     [--out k8s/production.yaml]
  modelci k8s validate k8s/production.yaml

`render` writes a Deployment (image by digest, readiness /v2/health/ready, liveness /v2/health/live,
rolling update with maxUnavailable 0, non-root uid 10001, resources, model version/sha256 labels)
and a ClusterIP Service, validates them against the pinned Kubernetes schemas and writes the YAML
to --out (or stdout when --out is absent or "-"). Apply with `kubectl apply -f FILE`. An image
without a digest is refused. `validate` checks any manifest file the same way.

Prints one JSON document on stdout ({"out", "valid", "kubernetes_version", "resources"}) unless the
YAML itself goes to stdout. Exit status 0 valid, 1 invalid or error.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import EXIT_USAGE
from ..settings.k8s import RenderSettings, ValidateSettings
from ..steps import Result
from ..steps import k8s as step


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("k8s", help="render and validate Kubernetes manifests for the serving image",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="k8s_command", metavar="{render,validate}")
    r = sub.add_parser("render", help="render Deployment + Service (validated offline)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--environment", help="environment name [MODELCI_ENVIRONMENT, CI_ENVIRONMENT_NAME]")
    r.add_argument("--image", help="image pinned by digest, REPO@sha256:… [MODELCI_IMAGE from the build dotenv]")
    r.add_argument("--port", type=int, help="container port of the serving app [PORT, 8080]")
    r.add_argument("--service-port", type=int, default=80, help="port of the Service [80]")
    r.add_argument("--replicas", type=int, default=2, help="pods [2]")
    r.add_argument("--name", default="modelci-serving", help="name prefix; resources are NAME-ENVIRONMENT")
    r.add_argument("--namespace", default=None, help="namespace written into the manifests [none: kubectl's]")
    r.add_argument("--model-version", help="model version label [MODELCI_MODEL_VERSION]")
    r.add_argument("--model-sha256", help="model sha256 label/annotation [MODELCI_MODEL_SHA256]")
    r.add_argument("--cpu-request", default="250m")
    r.add_argument("--memory-request", default="512Mi")
    r.add_argument("--cpu-limit", default="1")
    r.add_argument("--memory-limit", default="1Gi")
    r.add_argument("--kubernetes-version", default=step.K8S_VERSION,
                   help=f"schema version to validate against [{step.K8S_VERSION}]")
    r.add_argument("--out", default=None, help="YAML file to write; '-' or absent: stdout")
    r.set_defaults(func=run_render)
    v = sub.add_parser("validate", help="validate a manifest file offline")
    v.add_argument("file", help="YAML file (one or more documents)")
    v.add_argument("--kubernetes-version", default=step.K8S_VERSION,
                   help=f"schema version to validate against [{step.K8S_VERSION}]")
    v.set_defaults(func=run_validate)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), EXIT_USAGE)[1])


def run_render(args: argparse.Namespace) -> Result:
    return step.render(RenderSettings.from_args(args))


def run_validate(args: argparse.Namespace) -> Result:
    return step.validate(ValidateSettings.from_args(args))
