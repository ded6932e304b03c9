"""Settings of `modelci k8s render` and `modelci k8s validate`."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from . import env, pick
from .common import ENVIRONMENT, IMAGE, MODEL_SHA256, MODEL_VERSION


@dataclass(frozen=True)
class RenderSettings:
    environment: str | None
    image: str | None
    port: int
    service_port: int
    replicas: int
    name: str
    namespace: str | None
    model_version: str | None
    model_sha256: str | None
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str
    kubernetes_version: str
    out: str | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RenderSettings:
        port = args.port if args.port is not None else int(env("PORT") or 8080)
        return cls(environment=pick(args.environment, ENVIRONMENT.name) or env("CI_ENVIRONMENT_NAME"),
                   image=pick(args.image, IMAGE.name), port=port, service_port=args.service_port,
                   replicas=args.replicas, name=args.name, namespace=args.namespace,
                   model_version=pick(args.model_version, MODEL_VERSION.name),
                   model_sha256=pick(args.model_sha256, MODEL_SHA256.name),
                   cpu_request=args.cpu_request, memory_request=args.memory_request, cpu_limit=args.cpu_limit,
                   memory_limit=args.memory_limit, kubernetes_version=args.kubernetes_version, out=args.out)


@dataclass(frozen=True)
class ValidateSettings:
    file: str
    kubernetes_version: str

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ValidateSettings:
        return cls(file=args.file, kubernetes_version=args.kubernetes_version)
