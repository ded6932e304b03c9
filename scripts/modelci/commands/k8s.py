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
import json
import os
import sys
from pathlib import Path
from typing import Any

from .. import k8s, log
from ..errors import ModelCIError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("k8s", help="render and validate Kubernetes manifests for the serving image",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="k8s_command", metavar="{render,validate}")
    r = sub.add_parser("render", help="render Deployment + Service (validated offline)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--environment", default=os.environ.get("MODELCI_ENVIRONMENT") or
                   os.environ.get("CI_ENVIRONMENT_NAME"), help="environment name [MODELCI_ENVIRONMENT]")
    r.add_argument("--image", default=os.environ.get("MODELCI_IMAGE"),
                   help="image pinned by digest, REPO@sha256:… [MODELCI_IMAGE from the build dotenv]")
    r.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8080),
                   help="container port of the serving app [8080]")
    r.add_argument("--service-port", type=int, default=80, help="port of the Service [80]")
    r.add_argument("--replicas", type=int, default=2, help="pods [2]")
    r.add_argument("--name", default="modelci-serving", help="name prefix; resources are NAME-ENVIRONMENT")
    r.add_argument("--namespace", default=None, help="namespace written into the manifests [none: kubectl's]")
    r.add_argument("--model-version", default=os.environ.get("MODELCI_MODEL_VERSION"),
                   help="model version label [MODELCI_MODEL_VERSION]")
    r.add_argument("--model-sha256", default=os.environ.get("MODELCI_MODEL_SHA256"),
                   help="model sha256 label/annotation [MODELCI_MODEL_SHA256]")
    r.add_argument("--cpu-request", default="250m")
    r.add_argument("--memory-request", default="512Mi")
    r.add_argument("--cpu-limit", default="1")
    r.add_argument("--memory-limit", default="1Gi")
    r.add_argument("--kubernetes-version", default=k8s.K8S_VERSION,
                   help=f"schema version to validate against [{k8s.K8S_VERSION}]")
    r.add_argument("--out", default=None, help="YAML file to write; '-' or absent: stdout")
    r.set_defaults(func=run_render)
    v = sub.add_parser("validate", help="validate a manifest file offline")
    v.add_argument("file", help="YAML file (one or more documents)")
    v.add_argument("--kubernetes-version", default=k8s.K8S_VERSION,
                   help=f"schema version to validate against [{k8s.K8S_VERSION}]")
    v.set_defaults(func=run_validate)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 64)[1])


def _summary(manifests: list[dict[str, Any]]) -> list[str]:
    return [f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}" for d in manifests if isinstance(d, dict)]


def run_render(args: argparse.Namespace) -> int:
    if not args.environment:
        raise ModelCIError("no environment: pass --environment or set MODELCI_ENVIRONMENT")
    manifests = k8s.render(environment=args.environment, image=args.image, port=args.port,
                           replicas=args.replicas, name=args.name, namespace=args.namespace,
                           model_version=args.model_version, model_sha256=args.model_sha256,
                           cpu_request=args.cpu_request, memory_request=args.memory_request,
                           cpu_limit=args.cpu_limit, memory_limit=args.memory_limit,
                           service_port=args.service_port)
    problems = k8s.validate(manifests, args.kubernetes_version)
    if problems:  # a bug in the renderer or a bad flag value the checks above missed
        raise ModelCIError(f"rendered manifests fail Kubernetes {args.kubernetes_version} validation: "
                           + "; ".join(problems))
    text = k8s.to_yaml(manifests)
    if not args.out or args.out == "-":
        sys.stdout.write(text)
        log.info(f"k8s: rendered {', '.join(_summary(manifests))} (valid for Kubernetes {args.kubernetes_version})")
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log.info(f"k8s: wrote {out}; apply with: kubectl apply -f {out}")
    print(json.dumps({"out": str(out), "valid": True, "kubernetes_version": args.kubernetes_version,
                      "resources": _summary(manifests), "image": args.image}, indent=2))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    docs = k8s.load_yaml_documents(args.file)
    if not docs:
        raise ModelCIError(f"{args.file}: no YAML documents; render it with `modelci k8s render --out {args.file}`")
    problems = k8s.validate(docs, args.kubernetes_version)
    for p in problems:
        log.warn(f"k8s: {args.file}: {p}")
    print(json.dumps({"file": args.file, "valid": not problems, "kubernetes_version": args.kubernetes_version,
                      "resources": _summary(docs), "problems": problems}, indent=2))
    if problems:
        raise ModelCIError(f"{args.file}: {problems[0]}" + (f" (and {len(problems) - 1} more)"
                                                            if len(problems) > 1 else "")
                           + "; fix the manifest or re-render it")
    return 0
