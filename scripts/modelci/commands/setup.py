"""`modelci setup`: prepare the GitLab project for modelci (idempotent; --dry-run only reads).

  modelci setup [--dry-run] [--deployer maintainer|developer|user:ID|group:ID ...]
                [--approvals N --approver ...] [--variable KEY=VALUE | --variable KEY ...]
                [--cron "0 6 * * *"] [--no-schedule]

Sets: the production environment, protected, with its allowed deployers (default: maintainers);
deployment approval rules with --approvals N (Premium+; where the tier lacks them a message says so
and the rest goes on); the project settings "prevent outdated deployment jobs" and "allow job
retries for rollback deployments"; CI/CD variables (masked and protected by default; `--variable
KEY` alone takes the value from the environment variable KEY; values are never printed); and the
pipeline schedule of the drift monitor (no schedule variable; default daily 06:00 UTC).

Prints one JSON document: {"dry_run", "project", "changed", "summary", "items": [{"item", "action"}]}
with action created / updated / unchanged / unsupported (would-create / would-update in a dry run).
A second run reports every item unchanged and writes nothing. Needs a Maintainer's token with the
`api` scope (MODELCI_GITLAB_TOKEN), the API URL (CI_API_V4_URL) and the project (CI_PROJECT_ID).
"""
from __future__ import annotations

import argparse
from typing import Any

from ..settings.setup import SetupSettings
from ..steps import Result
from ..steps import setup as step


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("setup", help="prepare the GitLab project (protected production, settings, "
                                            "variables, monitor schedule)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="only read; print the planned changes")
    p.add_argument("--api-url", help="GitLab API URL, e.g. https://gitlab.example.com/api/v4 [CI_API_V4_URL]")
    p.add_argument("--project", help="project id or group/project path [CI_PROJECT_ID]")
    p.add_argument("--token-env", default=None, metavar="NAME",
                   help="name of the environment variable holding the token [MODELCI_GITLAB_TOKEN]")
    p.add_argument("--environment", help="environment to protect [MODELCI_ENVIRONMENT, production]")
    p.add_argument("--external-url", help="external URL given to a newly created environment [MODELCI_PRODUCTION_URL]")
    p.add_argument("--deployer", action="append", default=[], metavar="WHO",
                   help="who may deploy: maintainer, developer, admin, access:LEVEL, user:ID, group:ID "
                        "(repeatable; default maintainer)")
    p.add_argument("--approvals", type=int, default=0, metavar="N",
                   help="required deployment approvals (Premium+; 0 = none, the default)")
    p.add_argument("--approver", action="append", default=[], metavar="WHO",
                   help="who may approve (same forms as --deployer; default maintainer)")
    p.add_argument("--variable", action="append", default=[], metavar="KEY[=VALUE]",
                   help="project CI/CD variable; KEY alone reads the value from the environment")
    p.add_argument("--no-mask", dest="masked", action="store_false", help="do not mask the variables")
    p.add_argument("--no-protect", dest="protected", action="store_false",
                   help="make the variables available on unprotected branches too")
    p.add_argument("--variable-scope", default="*", help="environment scope of the variables [*]")
    p.add_argument("--cron", help="cron of the monitoring schedule [MODELCI_MONITOR_CRON, 0 6 * * *: daily]")
    p.add_argument("--cron-timezone", default="UTC", help="time zone of the cron [UTC]")
    p.add_argument("--schedule-ref", default=None, help="branch the schedule runs on [default branch]")
    p.add_argument("--no-schedule", dest="schedule", action="store_false",
                   help="do not create the monitoring schedule")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Result:
    return step.run(SetupSettings.from_args(args))
