"""`modelci registry`: model versions in GitLab's Model Registry (gitlab) or generic packages (generic).

  modelci registry pull --version 1.3.0|latest --out out/champion [--backend gitlab|generic]
  modelci registry latest [--major N]
  modelci registry push --backend generic --model out/model --version 1.3.0 [--run-record ...] [--verdict ...]
  modelci registry next-version [--major N] [--patch] [--dotenv out/version.env]   (generic)

The model name: --name, else MODELCI_MODEL_NAME, else model.json's name (push), else model.name in the
config (--config / MODELCI_CONFIG). The registry: --backend, else MODELCI_MODEL_REGISTRY (default gitlab).
"""
from __future__ import annotations

import argparse
from typing import Any

from ..settings.registry import BACKENDS, RegistrySettings
from ..steps import Result
from ..steps import registry as step


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("registry", help="pull/list model versions (GitLab Model Registry or generic packages)",
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="registry_command", metavar="SUBCOMMAND", required=True, parser_class=type(p))

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--name", help="model name [MODELCI_MODEL_NAME; default from model.json/config]")
        sp.add_argument("--config", help="model config, read for model.name/model.major [MODELCI_CONFIG]")
        sp.add_argument("--backend", choices=BACKENDS, help="registry [MODELCI_MODEL_REGISTRY, default gitlab]")
        sp.set_defaults(func=run)

    push = sub.add_parser("push", help="upload a gated model as a new version (generic registry)")
    common(push)
    push.add_argument("--model", required=True, help="model directory (model.joblib, model.json, smoke.json)")
    push.add_argument("--version", required=True, help="semver X.Y.Z")
    push.add_argument("--run-record", help="run.json (default: <model dir>/../run.json)")
    push.add_argument("--verdict", help="passing gate verdict (default: <model dir>/../gate/verdict.json)")

    pull = sub.add_parser("pull", help="download a version and verify every file's sha256")
    common(pull)
    pull.add_argument("--version", required=True, help="semver X.Y.Z, or `latest`")
    pull.add_argument("--out", required=True, help="output directory: new, empty, or made by an earlier pull")

    nxt = sub.add_parser("next-version", help="print the next model version (generic registry)")
    common(nxt)
    nxt.add_argument("--major", type=int, help="major version (default: model.major in the config)")
    nxt.add_argument("--patch", action="store_true", help="next patch of the latest version instead")
    nxt.add_argument("--dotenv", help="also write MODELCI_MODEL_VERSION=<version> to this file")

    latest = sub.add_parser("latest", help="print the highest version in the registry")
    common(latest)
    latest.add_argument("--major", type=int, help="only versions with this major (generic)")


def run(args: argparse.Namespace) -> Result:
    return step.run(RegistrySettings.from_args(args))
