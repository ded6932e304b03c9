"""Settings of `modelci deploy` (docs/deploy-targets.md)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from . import get, get_float, get_int, pick, var
from .build import IDENTICAL_TO_PRODUCTION as IDENTICAL
from .common import ENVIRONMENT, IMAGE

USED_BY = ("deploy",)
DEFAULT_PROXY_IMAGE = "registry.gitlab.com/modelci/modelci/proxy:0.1.0"

var("MODELCI_ENVIRONMENT_URL", "Environment URL http://HOST:PORT: HOST is the target's address, the "
    "proxy listens on PORT (else CI_ENVIRONMENT_URL).", kind="url", used_by=USED_BY)
var("MODELCI_DEPLOY_NAMESPACE", "Prefix of the target's container names (else CI_PROJECT_PATH_SLUG).",
    used_by=USED_BY)
var("MODELCI_READY_TIMEOUT", "Seconds to wait for the new backend's readiness.", default="120",
    kind="float", used_by=USED_BY)
var("MODELCI_DEPLOY_DOTENV", "Write a dotenv report (MODELCI_DEPLOYED_*) to this path.", kind="path",
    used_by=USED_BY)
for _name, _what in (("IMAGE", "the serving image (by digest)"), ("VERSION", "the model version"),
                     ("PROXY_IMAGE", "the proxy image (by digest)")):
    var(f"MODELCI_DEPLOYED_{_name}", f"Written by the deploy job's dotenv report (--dotenv): {_what} the "
        "environment now serves.", used_by=USED_BY)
var("MODELCI_SITE", "Internal: the proxy's site config, handed to `exec` inside the proxy container when the "
    "deploy rewrites it on the target's volume (never read from the job's environment).", used_by=USED_BY)
var("MODELCI_PROXY_IMAGE", "The environment's proxy image (published with the tools image, same "
    "version); pulled onto the target, never built there.", default=DEFAULT_PROXY_IMAGE, used_by=USED_BY)
var("MODELCI_PROXY_GRPC_PORT", "Port of the proxy's gRPC (HTTP/2) listener; 0 turns it off.",
    default="0", kind="int", used_by=USED_BY)
var("MODELCI_DEPLOY_SSH_KEY", "Path of the private key for DOCKER_HOST=ssh://… (a protected file "
    "variable scoped to the environment).", kind="path", used_by=USED_BY, secret=False)
var("MODELCI_DEPLOY_SSH_KNOWN_HOSTS", "Path of a known_hosts file with the deploy host's key "
    "(ssh://: unknown host keys are refused).", kind="path", used_by=USED_BY)
var("MODELCI_DEPLOY_LOCK_TIMEOUT", "Seconds a deploy waits for the environment's lock on the target.",
    default="900", kind="float", used_by=USED_BY)
var("MODELCI_DEPLOY_LOCK_STALE", "Seconds without a heartbeat after which a lock is taken over.",
    default="60", kind="float", used_by=USED_BY)
var("MODELCI_BACKEND_MEMORY", "Memory limit of the serving backend container.", default="1g",
    used_by=USED_BY)
var("MODELCI_BACKEND_PIDS", "Process/thread limit of the serving backend container.", default="256",
    kind="int", used_by=USED_BY)
var("MODELCI_DRAIN_SECONDS", "Seconds the old backend keeps running after the switch.", default="2",
    kind="float", used_by=USED_BY)


def _build_record() -> dict[str, str]:
    from ..dockerutil import read_dotenv
    from ..trust import BUILD_RECORD

    return read_dotenv(BUILD_RECORD) if BUILD_RECORD.is_file() else {}


@dataclass(frozen=True)
class DeploySettings:
    environment: str | None
    url: str | None
    image: str | None
    namespace: str
    release_checks: bool  # production's checks (trust.check_release): set by the component's script only
    identical_to_production: bool
    ready_timeout: float
    dotenv: str | None
    teardown: bool
    proxy_image: str
    grpc_port: int
    lock_timeout: float
    lock_stale: float
    backend_memory: str
    backend_pids: int
    drain_seconds: float

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DeploySettings:
        import os

        timeout = getattr(args, "ready_timeout", None)
        return cls(
            environment=pick(getattr(args, "environment", None), ENVIRONMENT.name)
            or os.environ.get("CI_ENVIRONMENT_NAME") or None,
            url=pick(getattr(args, "url", None), "MODELCI_ENVIRONMENT_URL")
            or os.environ.get("CI_ENVIRONMENT_URL") or None,
            image=pick(getattr(args, "image", None), IMAGE.name),
            namespace=pick(getattr(args, "namespace", None), "MODELCI_DEPLOY_NAMESPACE")
            or os.environ.get("CI_PROJECT_PATH_SLUG") or "modelci",
            release_checks=getattr(args, "release_checks", None) == "true",  # a flag, never a variable
            # read from the build job's record file, never a variable: a pipeline variable set to true
            # would otherwise make a deploy job "pass" (and GitLab record a deployment) without deploying
            identical_to_production=_build_record().get(IDENTICAL.name, "").lower() == "true",
            ready_timeout=float(timeout) if timeout is not None else float(get_float("MODELCI_READY_TIMEOUT") or 120),
            dotenv=pick(getattr(args, "dotenv", None), "MODELCI_DEPLOY_DOTENV"),
            teardown=bool(getattr(args, "teardown", False)),
            proxy_image=pick(getattr(args, "proxy_image", None), "MODELCI_PROXY_IMAGE") or DEFAULT_PROXY_IMAGE,
            grpc_port=int(pick(getattr(args, "grpc_port", None), "MODELCI_PROXY_GRPC_PORT") or 0),
            lock_timeout=float(get_float("MODELCI_DEPLOY_LOCK_TIMEOUT") or 900),
            lock_stale=float(get_float("MODELCI_DEPLOY_LOCK_STALE") or 60),
            backend_memory=get("MODELCI_BACKEND_MEMORY") or "1g",
            backend_pids=int(get_int("MODELCI_BACKEND_PIDS") or 256),
            drain_seconds=float(get_float("MODELCI_DRAIN_SECONDS") or 0),
        )

    def replace(self, **kw: object) -> DeploySettings:
        import dataclasses

        return dataclasses.replace(self, **kw)  # type: ignore[arg-type]
