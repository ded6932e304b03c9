"""Settings of `modelci setup`."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from . import pick, var
from .common import ENVIRONMENT, PRODUCTION_URL

MONITOR_CRON = var("MODELCI_MONITOR_CRON", "Cron of the drift monitor's pipeline schedule created by "
                   "`modelci setup`.", "0 6 * * *", used_by=("setup",))


@dataclass(frozen=True)
class SetupSettings:
    dry_run: bool
    api_url: str | None
    project: str | None
    token: tuple[str, str] | None        # (--token-env NAME, its value), else the usual environment
    environment: str
    external_url: str | None
    deployers: tuple[str, ...]
    approvals: int
    approvers: tuple[str, ...]
    variables: tuple[str, ...]
    variable_values: dict[str, str]      # environment values of the `--variable KEY` entries only
    masked: bool
    protected: bool
    variable_scope: str
    cron: str
    cron_timezone: str
    schedule_ref: str | None
    schedule: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SetupSettings:
        keys = [v.partition("=")[0].strip() for v in args.variable if "=" not in v]
        return cls(dry_run=args.dry_run, api_url=args.api_url, project=args.project,
                   token=(args.token_env, os.environ.get(args.token_env, "")) if args.token_env else None,
                   environment=pick(args.environment, ENVIRONMENT.name, "production") or "production",
                   external_url=pick(args.external_url, PRODUCTION_URL.name),
                   deployers=tuple(args.deployer), approvals=args.approvals, approvers=tuple(args.approver),
                   variables=tuple(args.variable),
                   variable_values={k: os.environ[k] for k in keys if k in os.environ},
                   masked=args.masked, protected=args.protected, variable_scope=args.variable_scope,
                   cron=pick(args.cron, MONITOR_CRON.name) or "0 6 * * *", cron_timezone=args.cron_timezone,
                   schedule_ref=args.schedule_ref, schedule=args.schedule)
