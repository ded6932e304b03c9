"""Settings of `modelci registry` (pull, push, latest, next-version) and the registry choice that
`modelci publish` shares (docs/model-registry.md)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from . import get, pick, var

try:  # declared once for every step (settings/common.py) where that module exists
    from .common import CONFIG
except ImportError:  # pragma: no cover - before the shared module exists: the same declaration
    CONFIG = var("MODELCI_CONFIG", "The model config file (modelci.yml).", "model/modelci.yml", kind="path",
                 used_by=("train", "build", "gate", "monitor", "registry"))

BACKENDS = ("gitlab", "generic", "none")
_OLD_BOOL = {"true": "gitlab", "1": "gitlab", "yes": "gitlab", "on": "gitlab",
             "false": "none", "0": "none", "no": "none", "off": "none"}

MODEL_REGISTRY = var("MODELCI_MODEL_REGISTRY", "Where model versions and training runs go: gitlab (GitLab's "
                     "Model Registry and model experiments, GitLab >= 17.6), generic (versions in the generic "
                     "package registry, for GitLab without the Model Registry; no experiment runs) or none. "
                     "The `model_registry` input of the publish component.", "gitlab",
                     used_by=("publish", "registry"))
MODEL_NAME = var("MODELCI_MODEL_NAME", "The model's name in the registry; default model.json's name, else "
                 "model.name in the config.", used_by=("registry",))


def backend(flag: object) -> str:
    """The registry choice; the old boolean values still work (true = gitlab, false = none)."""
    value = (pick(flag, MODEL_REGISTRY.name) or "gitlab").strip().lower()
    if value in _OLD_BOOL:
        from .. import log
        log.warn(f"{MODEL_REGISTRY.name}={value}: booleans are deprecated; use gitlab, generic or none")
        value = _OLD_BOOL[value]
    if value not in BACKENDS:
        from ..errors import ModelCIError
        raise ModelCIError(f"{MODEL_REGISTRY.name}={value!r}: not a registry choice; use gitlab, generic or none")
    return value


@dataclass(frozen=True)
class RegistrySettings:
    action: str                     # pull | push | latest | next-version
    backend: str
    name: str | None
    config: str
    version: str | None = None
    out: str | None = None
    model: str | None = None
    run_record: str | None = None
    verdict: str | None = None
    major: int | None = None
    patch: bool = False
    dotenv: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RegistrySettings:
        return cls(action=args.registry_command, backend=backend(getattr(args, "backend", None)),
                   name=pick(args.name, MODEL_NAME.name), config=pick(args.config, CONFIG.name) or get(CONFIG.name)
                   or "model/modelci.yml", version=getattr(args, "version", None), out=getattr(args, "out", None),
                   model=getattr(args, "model", None), run_record=getattr(args, "run_record", None),
                   verdict=getattr(args, "verdict", None), major=getattr(args, "major", None),
                   patch=bool(getattr(args, "patch", False)), dotenv=getattr(args, "dotenv", None))
