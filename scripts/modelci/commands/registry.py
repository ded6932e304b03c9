"""`modelci registry`: model versions in GitLab's generic package registry.

  modelci registry push --model out/model --version 1.3.0 [--run-record out/run.json] [--verdict out/gate/verdict.json]
  modelci registry pull --version 1.3.0 --out out/champion
  modelci registry next-version [--major N] [--patch] [--dotenv out/version.env]
  modelci registry latest [--major N]

The package name is the model name: --name, else MODELCI_MODEL_NAME, else model.json's name (push),
else model.name in the config (--config / MODELCI_CONFIG / model/modelci.yml).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from .. import artifact, gitlab_api, log
from ..errors import ModelCIError
from ..model_registry import ModelRegistry


def _env(name: str, default: Any = None) -> Any:
    # TEMPORARY (arch branch): log.env is gone; this file's owner moves it onto modelci.settings.
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("registry", help="push/pull model versions to/from GitLab's package registry",
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="registry_command", metavar="SUBCOMMAND", required=True,
                           parser_class=type(p))

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--name", default=_env("MODELCI_MODEL_NAME"),
                        help="model (package) name (env MODELCI_MODEL_NAME; default from model.json/config)")
        sp.add_argument("--config", default=_env("MODELCI_CONFIG", "model/modelci.yml"),
                        help="model config, read for model.name/model.major (env MODELCI_CONFIG)")

    push = sub.add_parser("push", help="upload a gated model as a new version")
    common(push)
    push.add_argument("--model", required=True, help="model directory (model.joblib, model.json, smoke.json)")
    push.add_argument("--version", required=True, help="semver X.Y.Z")
    push.add_argument("--run-record", help="run.json (default: <model dir>/../run.json)")
    push.add_argument("--verdict", help="passing gate verdict (default: <model dir>/../gate/verdict.json)")
    push.set_defaults(func=run_push)

    pull = sub.add_parser("pull", help="download a version and verify it")
    common(pull)
    pull.add_argument("--version", required=True, help="semver X.Y.Z, or `latest`")
    pull.add_argument("--out", required=True, help="output directory (replaced atomically)")
    pull.set_defaults(func=run_pull)

    nxt = sub.add_parser("next-version", help="print the next model version (next minor of --major)")
    common(nxt)
    nxt.add_argument("--major", type=int, help="major version (default: model.major in the config)")
    nxt.add_argument("--patch", action="store_true", help="next patch of the latest version instead")
    nxt.add_argument("--dotenv", help="also write MODELCI_MODEL_VERSION=<version> to this file")
    nxt.set_defaults(func=run_next_version)

    latest = sub.add_parser("latest", help="print the highest version in the registry")
    common(latest)
    latest.add_argument("--major", type=int, help="only versions with this major")
    latest.set_defaults(func=run_latest)


def _config_model(path: str | None) -> dict[str, Any]:
    """The config's `model:` section, read directly (no data needed for registry commands)."""
    if not path or not Path(path).exists():
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ModelCIError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    section = data.get("model") if isinstance(data, dict) else None
    return section if isinstance(section, dict) else {}


def _name(args: argparse.Namespace, meta: dict[str, Any] | None = None) -> str:
    name = args.name or (meta or {}).get("name") or _config_model(args.config).get("name")
    if not name:
        raise ModelCIError(f"{args.config}: model.name: not found; pass --name or set MODELCI_MODEL_NAME")
    return str(name)


def _registry(name: str, scope: str) -> ModelRegistry:
    return ModelRegistry(gitlab_api.from_env(scope=scope), name)


def run_push(args: argparse.Namespace) -> int:
    model_dir = Path(args.model)
    meta = artifact.read_meta(model_dir)
    run_record = args.run_record or str(model_dir.parent / "run.json")
    verdict = args.verdict or str(model_dir.parent / "gate" / "verdict.json")
    result = _registry(_name(args, meta), gitlab_api.SCOPE_PACKAGES_WRITE).push(
        model_dir, args.version, run_record=run_record, verdict=verdict)
    print(json.dumps(result))
    return 0


def run_pull(args: argparse.Namespace) -> int:
    registry = _registry(_name(args), gitlab_api.SCOPE_PACKAGES_READ)
    version = args.version
    if version == "latest":
        version = registry.latest()
        if not version:
            raise ModelCIError(f"registry: {registry.name} has no version yet; nothing to pull")
    print(json.dumps(registry.pull(version, args.out)))
    return 0


def run_next_version(args: argparse.Namespace) -> int:
    major = args.major
    if major is None:
        major = _config_model(args.config).get("major")
        if major is None:
            raise ModelCIError(f"{args.config}: model.major: not set; pass --major N")
    registry = _registry(_name(args), gitlab_api.SCOPE_PACKAGES_READ)
    version = registry.next_version(major, patch=args.patch)
    if args.dotenv:
        os.makedirs(os.path.dirname(os.path.abspath(args.dotenv)), exist_ok=True)
        with open(args.dotenv, "w") as fh:
            fh.write(f"MODELCI_MODEL_VERSION={version}\n")
    log.info(f"registry: next version of {registry.name}: {version}")
    print(json.dumps({"name": registry.name, "version": version}))
    return 0


def run_latest(args: argparse.Namespace) -> int:
    registry = _registry(_name(args), gitlab_api.SCOPE_PACKAGES_READ)
    version = registry.latest(args.major)
    print(json.dumps({"name": registry.name, "version": version}))
    return 0
